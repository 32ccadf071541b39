package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
)

// tailStore returns a migrated store in the tailing mode, in a schema of
// t's own; its slot and publication are dropped when t ends (after the
// relays it started stopped, since cleanups run last-in first-out).
func tailStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	cfg.Tail = true
	s, pool := testStore(t, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropTail(ctx); err != nil {
			t.Errorf("DropTail: %v", err)
		}
	})
	_ = pool
	return s
}

// tailHarness builds outboxes in the tailing mode for the relay suite.
func tailHarness() conformance.StoreHarness {
	return conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
		s := tailStore(t, Config{Limits: opts.Limits, Lanes: opts.Lanes})
		return outboxOf(s, s.pool)
	}}
}

// The relay suite with the outbox as a log: writers and relays lose
// nothing and keep per-key order, a poison message is parked and
// dead-lettered while the stream goes on, and the slot changes hands as
// relays join, leave, crash and wake up from a pause.
func TestTailRelaySuite(t *testing.T) {
	t.Parallel()
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:    tailHarness(),
		Broker:   conformance.MemoryBroker(),
		HoldOpen: 6 * time.Second,
	})
}
