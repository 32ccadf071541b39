package natspub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Headers the publisher adds to the message's own. User headers cannot
// replace them: names starting with "Nats-" or "Outbox-" (any case) are
// refused.
const (
	// HeaderMsgID carries [outbox.Message.ID]. JetStream drops a message
	// whose ID its stream has stored within the stream's duplicate window.
	HeaderMsgID = jetstream.MsgIDHeader
	// HeaderKey carries [outbox.Message.Key], when it is not empty. NATS has
	// no message key of its own; consumers read the key from this header.
	HeaderKey = "Outbox-Key"
)

// Publisher publishes outbox messages to NATS JetStream. It implements
// [outbox.Publisher] and [outbox.Pinger]. It is safe for concurrent use.
type Publisher struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	cfg    Config
	window chan struct{} // one element per message in flight
	owned  *nats.Conn    // the connection Connect opened, closed by Close
	closed atomic.Bool

	duplicates atomic.Int64 // acknowledgements that said "duplicate"

	streamMu sync.Mutex // serializes stream creation
}

var (
	_ outbox.Publisher = (*Publisher)(nil)
	_ outbox.Pinger    = (*Publisher)(nil)
)

// New returns a Publisher over a JetStream context the caller owns: Close
// does not close its connection. The context's connection should reconnect
// on its own (nats.go does by default, with MaxReconnects 60; the relay
// outlives outages only while the connection tries). New reports an error
// matching [outbox.ErrInvalidConfig] for a nil js or an invalid cfg.
func New(js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if js == nil || js.Conn() == nil {
		return nil, fmt.Errorf("%w: natspub: New needs a JetStream context with a connection (jetstream.New(nc))", outbox.ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return newPublisher(js, cfg), nil
}

func newPublisher(js jetstream.JetStream, cfg Config) *Publisher {
	return &Publisher{
		js:     js,
		nc:     js.Conn(),
		cfg:    cfg,
		window: make(chan struct{}, cfg.MaxInFlight),
	}
}

// JetStream returns the JetStream context the publisher publishes through.
func (p *Publisher) JetStream() jetstream.JetStream { return p.js }

// Publish implements [outbox.Publisher]. It sends messages asynchronously,
// up to MaxInFlight at once, and returns once each has been acknowledged by
// its stream, has failed, or ctx has ended. A message whose key has an
// earlier message in msgs is sent only after that message is acknowledged,
// so a failure holds back the rest of its key (their results are
// [outbox.ErrNotAttempted]); messages of different keys, and messages
// without a key, share the window freely.
//
// Results wrap [outbox.ErrUnavailable] when the connection is down (the
// relay then pauses instead of counting attempts),
// [outbox.ErrTopicUnavailable] when a subject's stream does not answer (no
// leader; the relay holds back that subject), [ErrNoStream] when no
// stream captures a subject, and are [outbox.Permanent] for a message larger
// than the server's max_payload or its stream's max_msg_size, an invalid
// subject, or a reserved header name.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	results := make([]error, len(msgs))
	if len(msgs) == 0 {
		return results
	}
	b := newBatch(ctx, p, msgs, results)
	b.run()
	b.release()
	return results
}

// Duplicates returns how many messages JetStream acknowledged as duplicates
// since the Publisher was made: their Nats-Msg-Id was already stored in the
// stream's duplicate window, so the stream dropped the new copy. They are
// republished messages whose first acknowledgement was lost (a crash, a
// timeout, a connection lost mid-batch), and count as delivered.
func (p *Publisher) Duplicates() int64 { return p.duplicates.Load() }

// Ping implements [outbox.Pinger]: it reports an error matching
// [outbox.ErrUnavailable] unless the connection is up and JetStream answers
// an account info request.
func (p *Publisher) Ping(ctx context.Context) error {
	if err := p.unavailable(); err != nil {
		return fmt.Errorf("natspub: ping: %w", err)
	}
	if _, err := p.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("natspub: ping: %w: JetStream did not answer: %w", outbox.ErrUnavailable, err)
	}
	return nil
}

// Close stops the publisher. For a Publisher from [Connect] it closes the
// connection Connect opened; for one from [New] the caller's connection is
// left open. Later Publish calls send nothing and report
// [outbox.ErrUnavailable]. Close is idempotent.
func (p *Publisher) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	if p.owned != nil {
		p.owned.Close()
	}
	return nil
}

// message builds the NATS message for m, or says why m cannot be published.
func (p *Publisher) message(m *outbox.Message) (*nats.Msg, error) {
	subject := m.Topic
	if p.cfg.Subject != nil {
		subject = p.cfg.Subject(*m)
	}
	if why := checkSubject(subject); why != "" {
		return nil, outbox.Permanent(fmt.Errorf("natspub: message %s cannot be published: %s", m.ID, why))
	}
	if m.ID == "" {
		return nil, outbox.Permanent(fmt.Errorf("natspub: message on %q: %w (Nats-Msg-Id needs it)", subject, outbox.ErrMissingID))
	}
	ce := p.cfg.CloudEvents
	extra := 2
	if ce.on() {
		extra += ceHeaders
	}
	// One backing array for every header's one-value slice.
	values := make([]string, 0, len(m.Headers)+extra)
	one := func(v string) []string {
		values = append(values, v)
		return values[len(values)-1 : len(values) : len(values)]
	}
	h := make(nats.Header, len(m.Headers)+extra)
	for name, value := range m.Headers {
		if reserved(name) {
			return nil, outbox.Permanent(fmt.Errorf("natspub: message %s: header %q uses a reserved prefix (Nats-, Outbox-)", m.ID, name))
		}
		if ce.on() && ce.replaced(name) {
			continue
		}
		h[name] = one(value)
	}
	h[HeaderMsgID] = one(m.ID)
	if m.Key != "" {
		h[HeaderKey] = one(m.Key)
	}
	if ce.on() {
		ce.attributes(m, func(name, value string) { h[name] = one(value) })
	}
	return &nats.Msg{Subject: subject, Data: m.Payload, Header: h}, nil
}

func reserved(name string) bool {
	return hasPrefixFold(name, "nats-") || hasPrefixFold(name, "outbox-")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
