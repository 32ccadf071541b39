package natspub

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Config configures a [Publisher]. The zero value of every field selects the
// default named in its comment: each message goes to the subject named by
// its Topic, up to DefaultMaxInFlight messages are in flight at once, and a
// message whose subject no stream captures fails with [ErrNoStream].
type Config struct {
	// Subject returns the subject a message is published on. Default: the
	// message's Topic. It must return a literal subject (no "*" or ">"
	// token, no empty token, no white space); a message mapped to anything
	// else fails permanently and is dead-lettered. See [SubjectPrefix].
	Subject func(outbox.Message) string

	// MaxInFlight bounds the messages this Publisher has sent and not yet
	// seen acknowledged, across all its concurrent Publish calls. JetStream
	// acknowledges each message on its own; the window hides those round
	// trips. Default DefaultMaxInFlight. With a JetStream context of your
	// own (New), keep it at or below the context's PublishAsyncMaxPending
	// (4000 unless set with jetstream.WithPublishAsyncMaxPending), or sends
	// wait for room in the context.
	MaxInFlight int

	// AckTimeout is how long one message waits for its acknowledgement
	// before it counts as failed. The message may have been stored all the
	// same; the relay publishes it again with the same Nats-Msg-Id and the
	// stream drops the copy if it is inside the duplicate window. Default
	// DefaultAckTimeout. Publish also returns when its context ends.
	AckTimeout time.Duration

	// CreateStreams makes the publisher create a stream for a subject that
	// no stream captures, then publish the message to it, instead of
	// failing the message with [ErrNoStream]. Off by default: streams hold
	// limits, retention and replication that an operator should choose.
	CreateStreams bool

	// StreamFor returns the stream to create for a subject, when
	// CreateStreams is set. Default [DefaultStreamFor]. The stream must
	// capture the subject, and its Duplicates window should outlive a
	// retry (see the package documentation).
	StreamFor func(subject string) jetstream.StreamConfig

	// CloudEvents, when its Source is set, adds the headers of the
	// CloudEvents NATS binding (binary mode) to every message. Default off.
	CloudEvents CloudEvents

	// Logger receives the publisher's rare events: streams it creates and,
	// for a Publisher from Connect, connection losses and recoveries.
	// Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxInFlight = 1024
	DefaultAckTimeout  = 10 * time.Second
)

// withDefaults returns a copy of c with zero fields set to their defaults,
// or an error matching [outbox.ErrInvalidConfig] that names the field.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: natspub: Config.%s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.MaxInFlight < 0:
		return bad("MaxInFlight is %d; it must be positive (or zero for %d)", c.MaxInFlight, DefaultMaxInFlight)
	case c.AckTimeout < 0:
		return bad("AckTimeout is %v; it must be positive (or zero for %v)", c.AckTimeout, DefaultAckTimeout)
	case c.StreamFor != nil && !c.CreateStreams:
		return bad("StreamFor is set but CreateStreams is false; set CreateStreams to let the publisher create streams")
	}
	if err := c.CloudEvents.validate(); err != nil {
		return c, err
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.StreamFor == nil {
		c.StreamFor = DefaultStreamFor
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
