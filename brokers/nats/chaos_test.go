package natspub

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/chaos"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// TestChaos runs the fault scenarios of package chaos with the in-memory
// outbox and this publisher on a throwaway nats-server that the broker
// outage scenario stops and starts. Relays run in this process (the memory
// store cannot be shared with another), and "crash" by losing access to
// the store and the publisher.
//
// The poison scenario expects the broker to refuse a payload in a way the
// relay retries MaxAttempts times; the payloads NATS refuses (over
// max_payload or a stream's max_msg_size) are permanent errors here,
// dead-lettered at once. So a gate in front of the publisher refuses the
// poison payload with a retryable error, as the memory pair's test does.
// The database-connections scenario does not apply to the memory store.
func TestChaos(t *testing.T) {
	results := chaos.Run(t, "memory × nats", func(t *testing.T) chaos.Target {
		srv := natsserver.Start(t)
		stream, prefix := natsserver.Stream(t, srv.URL())
		pub, err := Connect(t.Context(), Connection{URL: srv.URL(), Options: quickReconnect},
			Config{Logger: slog.New(slog.DiscardHandler), AckTimeout: 2 * chaos.Short().Outage})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pub.Close() })
		store := memory.NewStore(memory.StoreConfig{})
		gate := &poisonGate{Publisher: pub, poison: "poison!"}
		logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
		return chaos.Target{
			Outbox: conformance.NewMemoryOutbox(store),
			Broker: conformance.Broker{
				Publisher: pub,
				Consume:   consumeFunc(srv.URL(), stream),
			},
			Topic:       prefix + ".chaos",
			StartRelay:  chaos.InProcess(store, gate, logger),
			StopBroker:  func() error { srv.Stop(); return nil },
			StartBroker: func() error { srv.Start(); return nil },
			Poison: &chaos.Poison{
				Payload: []byte(gate.poison),
				Fix:     func(context.Context) error { gate.fixed.Store(true); return nil },
			},
		}
	}, chaos.OptionsFromEnv())
	chaos.Publish(t, results)
}

// poisonGate refuses one payload until fixed, holding back the later
// messages of its key, and passes everything else to the publisher.
type poisonGate struct {
	outbox.Publisher
	poison string
	fixed  atomic.Bool
}

var errPoisoned = errors.New("message rejected: this payload is not allowed")

func (g *poisonGate) Publish(ctx context.Context, msgs []outbox.Message) []error {
	res := make([]error, len(msgs))
	var pass []outbox.Message
	var index []int
	failed := map[string]bool{}
	for i, m := range msgs {
		switch {
		case m.Key != "" && failed[m.Key]:
			res[i] = outbox.ErrNotAttempted
		case string(m.Payload) == g.poison && !g.fixed.Load():
			res[i] = errPoisoned
			failed[m.Key] = true
		default:
			pass = append(pass, m)
			index = append(index, i)
		}
	}
	if len(pass) > 0 {
		for j, err := range g.Publisher.Publish(ctx, pass) {
			res[index[j]] = err
		}
	}
	return res
}
