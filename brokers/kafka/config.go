package kafkapub

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Config configures a [Publisher]. The zero value publishes every message
// to the topic named by its [outbox.Message.Topic].
type Config struct {
	// Topic returns the Kafka topic a message is produced to. Default: the
	// message's Topic. A message mapped to "" fails permanently and is
	// dead-lettered. See [TopicPrefix].
	Topic func(outbox.Message) string

	// CloudEvents, when its Source is set, adds the headers of the
	// CloudEvents Kafka binding (binary mode) to every record. Default off.
	CloudEvents CloudEvents
}

// TopicPrefix returns a [Config.Topic] mapping that produces each message to
// prefix + Topic, e.g. "prod.user.updated" for the prefix "prod." and the
// topic "user.updated". An empty prefix leaves topics unchanged.
func TopicPrefix(prefix string) func(outbox.Message) string {
	return func(m outbox.Message) string { return prefix + m.Topic }
}

// SASL mechanisms accepted in [SASL.Mechanism].
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL holds the credentials a client built by [Dial] authenticates with.
// The zero value means no authentication.
type SASL struct {
	// Mechanism is SASLPlain, SASLScramSHA256 or SASLScramSHA512 (any
	// case), or "" for none.
	Mechanism string
	// User and Password are the credentials; both are required with a
	// mechanism.
	User     string
	Password string
}

// DialConfig configures the client [Dial] builds. Brokers is required; the
// zero value of every other field selects the default in its comment.
type DialConfig struct {
	// Config configures the publisher itself.
	Config

	// Brokers are the seed brokers, as host:port. Required.
	Brokers []string

	// TLS, when set, encrypts the connections with this configuration (a
	// copy of it). Default: plain TCP. A tls.Config with no fields set
	// verifies the brokers against the system's roots.
	TLS *tls.Config

	// SASL authenticates the client. Default: none. PLAIN sends the
	// password as is, so use it over TLS only.
	SASL SASL

	// ClientID names the client in the brokers' logs and quotas. Default
	// "txoutbox".
	ClientID string

	// DeliveryTimeout bounds how long a record may wait in the client for
	// a broker to take it (kgo.RecordDeliveryTimeout) before it fails as
	// unavailable. Keep it below the relay's PublishTimeout, so that a
	// batch fails from the client's own timeout rather than from the
	// relay's deadline. A record already written to a broker whose answer
	// is lost is never failed early: the idempotent producer waits for it,
	// so that a retry cannot write it twice. At least 1s. Default
	// DefaultDeliveryTimeout.
	DeliveryTimeout time.Duration

	// MaxMessageBytes bounds a record batch before compression
	// (kgo.ProducerBatchMaxBytes); a record larger than that on its own
	// fails permanently without reaching a broker. Set it at or below the
	// smallest max.message.bytes of the topics you produce to: the broker
	// refuses a larger batch as a whole, and Publish then has to produce
	// its records again one at a time (only a record too large on its own
	// fails). Default DefaultMaxMessageBytes, which is below Kafka's
	// default max.message.bytes (1048588).
	MaxMessageBytes int

	// Linger is how long a partition waits for more records before its
	// batch is sent (kgo.ProducerLinger). Publish waits for its batch's
	// acknowledgements, so the default is 0: records go out at once, and
	// the records produced while a request is in flight form the next
	// batch.
	Linger time.Duration

	// Logger receives the client's own warnings and errors (a broker
	// refusing connections, a metadata load failing). Default: none, as
	// the relay already logs publish failures once per backoff step.
	Logger *slog.Logger
}

// Defaults of DialConfig.
const (
	DefaultClientID        = "txoutbox"
	DefaultDeliveryTimeout = 10 * time.Second
	DefaultMaxMessageBytes = 1_000_012
)

// unknownTopicRetries is how many UNKNOWN_TOPIC_OR_PARTITION answers the
// client accepts for a topic before it fails the records, instead of kgo's
// default 4: a missing topic then fails within a second or so instead of
// taking most of a publish deadline on every attempt.
const unknownTopicRetries = 1

// metadataMinAge is the shortest wait between two metadata loads, instead
// of kgo's default 5s: a partition whose leader moved, or a broker that
// restarted, is retried after a quarter of a second rather than after up to
// five (the Java producer's retry.backoff.ms is 100ms).
const metadataMinAge = 250 * time.Millisecond

// withDefaults returns a copy of c with zero fields set to their defaults,
// or an error matching outbox.ErrInvalidConfig that names the field.
func (c DialConfig) withDefaults() (DialConfig, error) {
	bad := func(format string, args ...any) (DialConfig, error) {
		return c, fmt.Errorf("%w: kafkapub: DialConfig.%s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Brokers) == 0 {
		return bad("Brokers is empty; list at least one seed broker as host:port")
	}
	for _, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " ,/") {
			return bad("Brokers has %q; each broker is one host:port", b)
		}
	}
	switch {
	case c.DeliveryTimeout < 0 || c.DeliveryTimeout > 0 && c.DeliveryTimeout < time.Second:
		return bad("DeliveryTimeout is %v; it must be at least 1s, kgo's minimum (or zero for %v)", c.DeliveryTimeout, DefaultDeliveryTimeout)
	case c.Linger < 0:
		return bad("Linger is %v; it must not be negative", c.Linger)
	case c.MaxMessageBytes < 0 || c.MaxMessageBytes > 0 && (c.MaxMessageBytes < 512 || c.MaxMessageBytes > 1<<30):
		return bad("MaxMessageBytes is %d; it must be between 512 and %d (or zero for %d)", c.MaxMessageBytes, 1<<30, DefaultMaxMessageBytes)
	}
	mech := strings.ToUpper(c.SASL.Mechanism)
	switch mech {
	case "":
		if c.SASL.User != "" || c.SASL.Password != "" {
			return bad("SASL has a user or password but no Mechanism; set it to %s, %s or %s", SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASL.User == "" || c.SASL.Password == "" {
			return bad("SASL.Mechanism is %s but the user or password is empty", mech)
		}
	default:
		return bad("SASL.Mechanism is %q; use %s, %s or %s", c.SASL.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	c.SASL.Mechanism = mech
	if err := c.CloudEvents.validate(); err != nil {
		return c, err
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return c, nil
}

// ClientOptions returns the kgo options [Dial] builds its client with: the
// seed brokers, TLS, SASL, the idempotent producer with acks=all (kgo's
// defaults, set explicitly), the delivery timeout, batch limit and linger
// of c, a short retry limit for unknown topics and a short minimum age of
// metadata (so that a moved leader or a restarted broker is found fast). Use it to build a
// client with options of your own added (hooks, metrics), then pass the
// client to [New]:
//
//	opts, err := cfg.ClientOptions()
//	client, err := kgo.NewClient(append(opts, kgo.WithHooks(metrics))...)
//	pub, err := kafkapub.New(client, cfg.Config)
func (c DialConfig) ClientOptions() ([]kgo.Opt, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(c.DeliveryTimeout),
		kgo.ProducerBatchMaxBytes(int32(c.MaxMessageBytes)),
		kgo.ProducerLinger(c.Linger),
		kgo.UnknownTopicRetries(unknownTopicRetries),
		kgo.MetadataMinAge(metadataMinAge),
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	switch c.SASL.Mechanism {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha512Mechanism()))
	}
	if c.Logger != nil {
		opts = append(opts, kgo.WithLogger(slogAdapter{c.Logger}))
	}
	return opts, nil
}
