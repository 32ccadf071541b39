package chaos_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/chaos"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// The in-memory reference pair goes through every scenario that applies to
// it: its relays run in this process and "crash" by losing access to the
// store and broker; its broker can go down and refuse one payload.
func TestChaosMemory(t *testing.T) {
	results := chaos.Run(t, "memory × memory", func(t *testing.T) chaos.Target {
		store := memory.NewStore(memory.StoreConfig{})
		pub := memory.NewPublisher(memory.PublisherConfig{})
		broker := conformance.NewMemoryBroker(pub)
		flaky := &flakyBroker{inner: pub, poison: "poison!"}
		logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
		return chaos.Target{
			Outbox:      conformance.NewMemoryOutbox(store),
			Broker:      broker,
			Topic:       broker.Topic(t),
			StartRelay:  chaos.InProcess(store, flaky, logger),
			StopBroker:  func() error { flaky.down.Store(true); return nil },
			StartBroker: func() error { flaky.down.Store(false); return nil },
			Poison: &chaos.Poison{
				Payload: []byte(flaky.poison),
				Fix:     func(context.Context) error { flaky.fixed.Store(true); return nil },
			},
		}
	}, chaos.OptionsFromEnv())
	chaos.Publish(t, results)
}

// flakyBroker is the memory broker behind a switch (an outage) and with one
// payload it refuses until fixed.
type flakyBroker struct {
	inner  outbox.Publisher
	poison string
	down   atomic.Bool
	fixed  atomic.Bool
}

func (b *flakyBroker) Publish(ctx context.Context, msgs []outbox.Message) []error {
	res := make([]error, len(msgs))
	if b.down.Load() {
		for i := range res {
			res[i] = fmt.Errorf("%w: connection refused", outbox.ErrUnavailable)
		}
		return res
	}
	var pass []outbox.Message
	var index []int
	failed := map[string]bool{}
	for i, m := range msgs {
		switch {
		case failed[m.Key]:
			res[i] = outbox.ErrNotAttempted
		case string(m.Payload) == b.poison && !b.fixed.Load():
			res[i] = fmt.Errorf("message rejected: payload %q is not allowed", m.Payload)
			failed[m.Key] = true
		default:
			pass = append(pass, m)
			index = append(index, i)
		}
	}
	for j, err := range b.inner.Publish(ctx, pass) {
		res[index[j]] = err
	}
	return res
}
