package bench

import (
	"context"
	"errors"
	"sync"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// memBroker is the in-memory reference publisher. Its "consumer" sees each
// message when the publisher accepts it.
type memBroker struct{}

func newMemoryBroker() *memBroker { return &memBroker{} }

func (memBroker) info(context.Context) Component {
	return Component{Spec: "memory", Kind: "memory", Server: "core/memory (in-process reference publisher)",
		Client: "core " + moduleVersion("github.com/txoutbox/txoutbox/core")}
}

func (memBroker) close() error { return nil }

func (memBroker) newTopic(_ context.Context, tag string) (topicTarget, error) {
	return &memTopic{topic: "outbox-bench." + tag, pub: memory.NewPublisher(memory.PublisherConfig{})}, nil
}

type memTopic struct {
	topic string
	pub   *memory.Publisher

	mu       sync.Mutex
	watchers []func(id string)
}

func (t *memTopic) name() string { return t.topic }

// Publish publishes through the shared in-memory broker and shows every
// accepted message to the consumers.
func (t *memTopic) Publish(ctx context.Context, msgs []outbox.Message) []error {
	results := t.pub.Publish(ctx, msgs)
	t.mu.Lock()
	watchers := t.watchers
	t.mu.Unlock()
	for i, err := range results {
		if err == nil {
			for _, w := range watchers {
				w(msgs[i].ID)
			}
		}
	}
	return results
}

func (t *memTopic) publisher(context.Context) (outbox.Publisher, func(), error) {
	return t, func() {}, nil
}

func (t *memTopic) producer(context.Context) (rawProducer, error) { return memProducer{t}, nil }

func (t *memTopic) consume(ctx context.Context, seen func(id string)) (<-chan error, error) {
	t.mu.Lock()
	t.watchers = append(t.watchers, seen)
	t.mu.Unlock()
	errs := make(chan error)
	context.AfterFunc(ctx, func() { close(errs) })
	return errs, nil
}

func (t *memTopic) drop(context.Context) error { return nil }

type memProducer struct{ t *memTopic }

func (p memProducer) publish(ctx context.Context, msgs []outbox.Message) error {
	return errors.Join(p.t.Publish(ctx, msgs)...)
}

func (memProducer) close() {}
