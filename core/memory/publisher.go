package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	outbox "github.com/txoutbox/txoutbox/core"
)

// PublisherConfig configures a [Publisher]. The zero value accepts every
// message.
type PublisherConfig struct {
	// Topics, when not nil, are the only topics that exist; a message to
	// another topic fails, as it does on a broker that does not create
	// topics on demand.
	Topics []string
	// MaxMessageBytes, when positive, rejects larger payloads with a
	// permanent error, as a broker's message size limit does.
	MaxMessageBytes int
}

// Publisher is a broker held in memory: it keeps every message it accepts,
// in order. It implements [outbox.Publisher]. Safe for concurrent use.
type Publisher struct {
	topics   map[string]bool
	maxBytes int

	mu      sync.Mutex
	log     []outbox.Message
	changed chan struct{} // closed and replaced on every accepted message
	reject  func(outbox.Message) error
}

var (
	_ outbox.Publisher = (*Publisher)(nil)
	_ outbox.Pinger    = (*Publisher)(nil)
)

// NewPublisher returns an empty in-memory broker.
func NewPublisher(cfg PublisherConfig) *Publisher {
	p := &Publisher{maxBytes: cfg.MaxMessageBytes, changed: make(chan struct{})}
	if cfg.Topics != nil {
		p.topics = make(map[string]bool, len(cfg.Topics))
		for _, t := range cfg.Topics {
			p.topics[t] = true
		}
	}
	return p
}

// CreateTopic makes a topic exist, for a publisher configured with Topics.
func (p *Publisher) CreateTopic(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.topics != nil {
		p.topics[name] = true
	}
}

// SetReject installs a function that can refuse messages (return an error)
// before the publisher's own checks, to simulate a broker failing; nil
// removes it.
func (p *Publisher) SetReject(reject func(outbox.Message) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reject = reject
}

// Publish implements [outbox.Publisher]. Messages are accepted one by one in
// slice order; after a failure, later messages of the same key get
// [outbox.ErrNotAttempted].
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	results := make([]error, len(msgs))
	failed := make(map[string]bool)
	p.mu.Lock()
	defer p.mu.Unlock()
	accepted := false
	for i, m := range msgs {
		if m.Key != "" && failed[m.Key] {
			results[i] = outbox.ErrNotAttempted
			continue
		}
		if err := p.checkLocked(ctx, m); err != nil {
			results[i] = err
			if m.Key != "" {
				failed[m.Key] = true
			}
			continue
		}
		m.Payload = slices.Clone(m.Payload)
		m.Headers = maps.Clone(m.Headers)
		p.log = append(p.log, m)
		accepted = true
	}
	if accepted {
		close(p.changed)
		p.changed = make(chan struct{})
	}
	return results
}

func (p *Publisher) checkLocked(ctx context.Context, m outbox.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.reject != nil {
		if err := p.reject(m); err != nil {
			return err
		}
	}
	if p.topics != nil && !p.topics[m.Topic] {
		return fmt.Errorf("memory: topic %q does not exist", m.Topic)
	}
	if p.maxBytes > 0 && len(m.Payload) > p.maxBytes {
		return outbox.Permanent(fmt.Errorf("memory: message of %d bytes is larger than the %d bytes the broker accepts", len(m.Payload), p.maxBytes))
	}
	return nil
}

// Messages returns a copy of every accepted message, in acceptance order.
func (p *Publisher) Messages() []outbox.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// Len returns how many messages were accepted.
func (p *Publisher) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.log)
}

// WaitFor blocks until at least n messages were accepted or ctx ends.
func (p *Publisher) WaitFor(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		have, changed := len(p.log), p.changed
		p.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("memory: %d of %d messages published: %w", have, n, ctx.Err())
		case <-changed:
		}
	}
}

// Ping implements [outbox.Pinger].
func (p *Publisher) Ping(ctx context.Context) error { return ctx.Err() }
