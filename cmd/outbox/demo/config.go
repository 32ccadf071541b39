package demo

import (
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Embedded backends, as Config.Store and Config.Broker name them.
const (
	// EmbeddedSQLite is an SQLite database in the demo's temporary
	// directory.
	EmbeddedSQLite = "sqlite"
	// EmbeddedNATS is a NATS server with JetStream running in this
	// process, storing in the demo's temporary directory.
	EmbeddedNATS = "nats"
	// EmbeddedKafka is an in-process kfake cluster (franz-go's fake Kafka).
	EmbeddedKafka = "kafka"
)

// Defaults of Config.
const (
	DefaultDuration = 15 * time.Second
	DefaultRate     = 200
	DefaultKeys     = 16
	DefaultLease    = 3 * time.Second
	DefaultDrain    = 30 * time.Second
)

// Config describes one demo run. The zero value of every field selects the
// default named in its comment.
type Config struct {
	// Store is the database: EmbeddedSQLite (or "") for a temporary SQLite
	// database, or the URL of a real one: postgres://…, mysql://… (or a
	// go-sql-driver DSN), sqlite:///path.db. On a real database the demo
	// works in tables (PostgreSQL: a schema) of its own, named
	// outbox_demo_<run>, and drops them at the end.
	Store string

	// Broker is EmbeddedNATS (or "") for a NATS server in this process,
	// EmbeddedKafka for an in-process kfake cluster, or the URL of a real
	// broker: nats://… or kafka://…. On a real broker the demo publishes
	// to a stream or topic of its own and deletes it at the end.
	Broker string

	// Duration is how long the service writes. The run then waits for the
	// last events to arrive (up to DrainTimeout). Default DefaultDuration.
	Duration time.Duration

	// Rate is how many events a second the service writes, across all
	// users. Default DefaultRate. A store that cannot keep up writes
	// slower; the progress line shows the rate reached.
	Rate int

	// Keys is how many users the service updates; each user id is an
	// ordering key. Default DefaultKeys.
	Keys int

	// Writers is how many transactions the service runs at once. Each user
	// belongs to one writer, so a user's events are committed in order.
	// Default min(Keys, 4).
	Writers int

	// Chaos kills the relay Kills times during the run and starts a new
	// one each time.
	Chaos bool

	// Kills is how many times Chaos kills the relay. Default one kill per
	// 3 seconds of Duration, at least 1.
	Kills int

	// RelayCommand, when set, runs every relay of a Chaos run as a separate
	// process, so that a kill is a real SIGKILL: it returns the command
	// for the given arguments, which start with "relay" (the outbox relay
	// command). The demo adds the environment (the store and broker URLs
	// travel in OUTBOX_STORE_URL and OUTBOX_BROKER_URL, not in arguments)
	// and the output files. Without it, relays run in this process and a
	// kill is simulated: from that instant every call of the dead relay to
	// the store or the broker fails, so it records nothing more and its
	// lanes stay leased until their lease expires.
	RelayCommand func(args []string) *exec.Cmd

	// Lease is the relay's lane lease: how long the lanes of a killed relay
	// wait before another relay takes them. Default DefaultLease.
	Lease time.Duration

	// DrainTimeout bounds the wait, after writing stops, for the events
	// still on their way. Default DefaultDrain.
	DrainTimeout time.Duration

	// Live rewrites the progress line in place every ProgressEvery
	// (for a terminal); otherwise a new line is printed every
	// ProgressEvery. Defaults: 250ms live, 2s otherwise.
	Live          bool
	ProgressEvery time.Duration

	// TempDir is where the demo makes its temporary directory. Default
	// os.TempDir().
	TempDir string

	// Logger receives the logs of the relay, the publisher and relay
	// processes. Default: none.
	Logger *slog.Logger
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Store == "" {
		c.Store = EmbeddedSQLite
	}
	if c.Broker == "" {
		c.Broker = EmbeddedNATS
	}
	c.Store, c.Broker = strings.TrimSpace(c.Store), strings.TrimSpace(c.Broker)
	for _, name := range []string{EmbeddedNATS, EmbeddedKafka} {
		if strings.EqualFold(c.Broker, name) {
			c.Broker = name
		}
	}
	if strings.EqualFold(c.Store, EmbeddedSQLite) {
		c.Store = EmbeddedSQLite
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.Writers == 0 {
		c.Writers = min(c.Keys, 4)
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrain
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 2 * time.Second
		if c.Live {
			c.ProgressEvery = 250 * time.Millisecond
		}
	}
	if c.Kills == 0 {
		c.Kills = max(1, int(c.Duration/(3*time.Second)))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case c.Duration < 0:
		return c, invalid("--duration must be positive, e.g. 15s")
	case c.Rate < 0:
		return c, invalid("--rate must be a positive number of events per second")
	case c.Keys < 0:
		return c, invalid("--keys must be a positive number of users")
	case c.Writers < 0 || c.Writers > c.Keys:
		return c, invalid("writers must be between 1 and the number of keys (%d)", c.Keys)
	case c.Kills < 0:
		return c, invalid("--kills must be positive")
	case c.Lease < 200*time.Millisecond:
		return c, invalid("--lease must be at least 200ms (it is how long the lanes of a killed relay wait)")
	case c.DrainTimeout < 0, c.ProgressEvery < 0:
		return c, invalid("timeouts must be positive")
	}
	if _, err := storeKind(c.Store); err != nil {
		return c, err
	}
	if _, err := brokerKind(c.Broker); err != nil {
		return c, err
	}
	return c, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
}
