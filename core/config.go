package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// RelayConfig configures a [Relay]. The zero value of every field selects
// the default named in its comment.
type RelayConfig struct {
	// Owner identifies this relay instance in lane leases, stats and
	// logs. Default: "<hostname>-<pid>-<random>". Two live relays must not
	// share an owner; a restarted relay should not reuse the owner of its
	// previous run (it then waits for its old lanes to expire like any
	// other relay, which the default guarantees).
	Owner string

	// BatchSize is the most records read and published at once.
	// Default 500. A relay tailing a log ([LogTailer]) publishes one batch
	// at a time, of up to BatchSize×Concurrency records.
	BatchSize int

	// Concurrency is how many batches one relay keeps in flight. Per-key
	// order holds for any value: a key has records in one batch in flight
	// at a time. Default 2 (measured: with 4, reads and settles cost more
	// per batch and several relays on one database drain slower, see
	// docs/benchmarks.md).
	Concurrency int

	// PollInterval is the longest wait between reads when the outbox is
	// idle; it is the safety net behind store notifications and
	// [Relay.Notify]. Default 1s.
	PollInterval time.Duration

	// MinPollInterval is the first wait after a read found nothing new;
	// the wait doubles up to PollInterval while the outbox stays idle and
	// goes back to MinPollInterval as soon as work appears. A wake-up
	// (a store notification, Notify) that comes soon after the start of a
	// read that was not full waits until half of MinPollInterval, at most
	// 5ms, has passed since then, so that a burst of commits costs one
	// read rather than one per commit. Default 10ms.
	MinPollInterval time.Duration

	// Lease is how long the relay's lane leases and membership last
	// without renewal; the relay renews them every third of it. The lanes
	// of a relay that died are taken over once its lease expires, and a
	// relay that could not renew within Lease stops publishing those lanes.
	// Default 10s.
	Lease time.Duration

	// PublishTimeout bounds one Publish call, and separately the recording
	// of its outcomes in the store. Default 15s.
	PublishTimeout time.Duration

	// ReadTimeout bounds one read of the relay's lanes and one round of
	// lane leasing. A read that takes longer fails with [ErrReadTimeout].
	// Default 5s.
	ReadTimeout time.Duration

	// MaxAttempts is how many attempts a record gets before it is
	// dead-lettered. An attempt counts when publishing fails, and when a
	// relay takes over the lanes of a relay that died while the record may
	// have been in flight, so a message that crashes relays ends among the
	// dead letters too. Default 10.
	MaxAttempts int

	// MinRetryDelay and MaxRetryDelay bound the exponential backoff
	// between attempts of a failing record: the n-th retry waits
	// MinRetryDelay*2^(n-1), capped at MaxRetryDelay, of which a random
	// part up to one half is taken off (jitter). Defaults 1s and 5m.
	MinRetryDelay time.Duration
	MaxRetryDelay time.Duration

	// StrictOrder makes a dead-lettered record hold back the later records
	// of its key until the dead letter is replayed or purged. By default
	// (false) the later records continue, and a replayed dead letter
	// arrives after them, out of order. Every relay on one outbox should
	// use the same setting.
	StrictOrder bool

	// Retention is how long delivered records are kept. Zero, the
	// default, deletes each record in the statement that settles its
	// batch once the broker acknowledged it: one row write per message,
	// the fastest (docs/benchmarks.md measures it). A positive value marks
	// records delivered instead, and the relay deletes them once they are
	// older than Retention, when the store is a [Cleaner]; a negative value
	// keeps them for good. Keep them to look delivered records up in the
	// database (`outbox status` and the dead letters never need them).
	Retention time.Duration

	// CleanupInterval is how often the relay deletes expired delivered
	// records; each round deletes batches of CleanupBatch until none is
	// left. Defaults 1m and 1000.
	CleanupInterval time.Duration
	CleanupBatch    int

	// Logger receives the relay's logs. Default slog.Default(). Failures
	// are logged once per backoff step, not once per record.
	Logger *slog.Logger

	// Observer receives read, batch and lane events for metrics and
	// tracing.
	// Default none.
	Observer Observer
}

// Defaults of RelayConfig.
const (
	DefaultBatchSize       = 500
	DefaultConcurrency     = 2
	DefaultPollInterval    = time.Second
	DefaultMinPollInterval = 10 * time.Millisecond
	DefaultLease           = 10 * time.Second
	DefaultPublishTimeout  = 15 * time.Second
	DefaultReadTimeout     = 5 * time.Second
	DefaultMaxAttempts     = 10
	DefaultMinRetryDelay   = time.Second
	DefaultMaxRetryDelay   = 5 * time.Minute
	DefaultCleanupInterval = time.Minute
	DefaultCleanupBatch    = 1000
)

// withDefaults returns a copy of c with zero fields set to their defaults,
// or an error naming the first field that is out of range.
func (c RelayConfig) withDefaults() (RelayConfig, error) {
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	setInt(&c.BatchSize, DefaultBatchSize)
	setInt(&c.Concurrency, DefaultConcurrency)
	setInt(&c.MaxAttempts, DefaultMaxAttempts)
	setInt(&c.CleanupBatch, DefaultCleanupBatch)
	setDuration(&c.PollInterval, DefaultPollInterval)
	setDuration(&c.MinPollInterval, min(DefaultMinPollInterval, c.PollInterval))
	setDuration(&c.Lease, DefaultLease)
	setDuration(&c.PublishTimeout, DefaultPublishTimeout)
	setDuration(&c.ReadTimeout, min(DefaultReadTimeout, c.Lease/2))
	setDuration(&c.MinRetryDelay, DefaultMinRetryDelay)
	setDuration(&c.MaxRetryDelay, max(DefaultMaxRetryDelay, c.MinRetryDelay))
	setDuration(&c.CleanupInterval, DefaultCleanupInterval)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}

	bad := func(format string, args ...any) (RelayConfig, error) {
		return c, fmt.Errorf("%w: RelayConfig.%s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.BatchSize < 0:
		return bad("BatchSize is %d; it must be positive (or zero for %d)", c.BatchSize, DefaultBatchSize)
	case c.Concurrency < 0:
		return bad("Concurrency is %d; it must be positive (or zero for %d)", c.Concurrency, DefaultConcurrency)
	case c.MaxAttempts < 0:
		return bad("MaxAttempts is %d; it must be positive (or zero for %d)", c.MaxAttempts, DefaultMaxAttempts)
	case c.CleanupBatch < 0:
		return bad("CleanupBatch is %d; it must be positive (or zero for %d)", c.CleanupBatch, DefaultCleanupBatch)
	case c.PollInterval < 0, c.MinPollInterval < 0, c.Lease < 0, c.PublishTimeout < 0, c.ReadTimeout < 0,
		c.MinRetryDelay < 0, c.MaxRetryDelay < 0, c.CleanupInterval < 0:
		return bad("durations must not be negative (only Retention may be, to keep delivered records for good)")
	case c.MinPollInterval > c.PollInterval:
		return bad("MinPollInterval (%v) is longer than PollInterval (%v)", c.MinPollInterval, c.PollInterval)
	case c.MinRetryDelay > c.MaxRetryDelay:
		return bad("MinRetryDelay (%v) is longer than MaxRetryDelay (%v)", c.MinRetryDelay, c.MaxRetryDelay)
	case c.ReadTimeout > c.Lease/2:
		return bad("ReadTimeout (%v) is longer than half the Lease (%v): a slow renewal would let the lanes expire while the relay still publishes them", c.ReadTimeout, c.Lease)
	}
	return c, nil
}

func setInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

func setDuration(v *time.Duration, def time.Duration) {
	if *v == 0 {
		*v = def
	}
}

func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "relay"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
