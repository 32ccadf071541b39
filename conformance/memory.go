package conformance

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// MemoryOutbox is the store harness of the in-memory reference store. Broker
// adapters pair it with their publisher in the relay suite.
func MemoryOutbox() StoreHarness {
	return StoreHarness{New: func(t *testing.T, opts OutboxOptions) Outbox {
		return NewMemoryOutbox(memory.NewStore(memory.StoreConfig{Limits: opts.Limits, Lanes: opts.Lanes}))
	}}
}

// NewMemoryOutbox wraps an in-memory store as an [Outbox].
func NewMemoryOutbox(s *memory.Store) Outbox {
	return Outbox{
		Store: s,
		Begin: func(ctx context.Context) (WriteTx, error) {
			return &memoryTx{s: s, tx: s.Begin()}, nil
		},
	}
}

type memoryTx struct {
	s  *memory.Store
	tx *memory.Tx
}

func (m *memoryTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return m.s.Enqueue(ctx, m.tx, msgs...)
}
func (m *memoryTx) Commit(context.Context) error   { return m.tx.Commit() }
func (m *memoryTx) Rollback(context.Context) error { return m.tx.Rollback() }

// MemoryBroker is the publisher harness of the in-memory reference broker.
// Store adapters pair it with their store in the relay suite. Like a real
// broker it refuses topics that were not created, and payloads over 64 KiB.
func MemoryBroker() PublisherHarness {
	return PublisherHarness{New: func(t *testing.T) Broker {
		pub := memory.NewPublisher(memory.PublisherConfig{Topics: []string{}, MaxMessageBytes: 64 << 10})
		b := NewMemoryBroker(pub)
		next := b.Topic
		b.Topic = func(t *testing.T) string {
			name := next(t)
			pub.CreateTopic(name)
			return name
		}
		b.MissingTopic = func(t *testing.T) string { return "missing-topic" }
		b.MaxMessageBytes = 64 << 10
		return b
	}}
}

// NewMemoryBroker wraps an in-memory publisher as a [Broker].
func NewMemoryBroker(pub *memory.Publisher) Broker {
	var topics atomic.Int64
	return Broker{
		Publisher: pub,
		Topic:     func(t *testing.T) string { return fmt.Sprintf("topic-%d", topics.Add(1)) },
		Consume: func(ctx context.Context, names []string, fn func(Received)) error {
			seen := 0
			for {
				if err := pub.WaitFor(ctx, seen+1); err != nil {
					return ctx.Err()
				}
				msgs := pub.Messages()
				for _, m := range msgs[seen:] {
					if slices.Contains(names, m.Topic) {
						fn(Received{ID: m.ID, Topic: m.Topic, Key: m.Key, Payload: m.Payload, Headers: m.Headers})
					}
				}
				seen = len(msgs)
			}
		},
	}
}
