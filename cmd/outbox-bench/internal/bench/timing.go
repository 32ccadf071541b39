package bench

import (
	"context"
	"sync/atomic"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Breakdown tells where the relays of a drain or a latency measurement
// spent their time: the mean duration of each call, and how many records
// each batch held. Calls
// overlap (relays and their workers run concurrently), so the parts do not
// add up to the drain's time.
type Breakdown struct {
	Batches        int64   `json:"batches"`
	RecordsPerCall float64 `json:"records_per_claim"`
	ClaimMs        float64 `json:"claim_ms"`
	EmptyClaims    int64   `json:"empty_claims"`
	PublishMs      float64 `json:"publish_ms"`
	MarkMs         float64 `json:"mark_delivered_ms"`
}

// timings accumulates the calls of the relays of one measurement.
type timings struct {
	claims, emptyClaims, claimed, claimNs atomic.Int64
	publishes, publishNs                  atomic.Int64
	marks, markNs                         atomic.Int64
}

func (t *timings) breakdown() *Breakdown {
	mean := func(ns, n *atomic.Int64) float64 {
		if n.Load() == 0 {
			return 0
		}
		return float64(ns.Load()) / float64(n.Load()) / 1e6
	}
	full := t.claims.Load() - t.emptyClaims.Load()
	b := &Breakdown{Batches: full, EmptyClaims: t.emptyClaims.Load(),
		ClaimMs: mean(&t.claimNs, &t.claims), PublishMs: mean(&t.publishNs, &t.publishes), MarkMs: mean(&t.markNs, &t.marks)}
	if full > 0 {
		b.RecordsPerCall = float64(t.claimed.Load()) / float64(full)
	}
	return b
}

// timedStore times Claim and MarkDelivered of a store.
type timedStore struct {
	outbox.Store
	t *timings
}

func (s timedStore) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	start := time.Now()
	recs, err := s.Store.Claim(ctx, p)
	s.t.claimNs.Add(int64(time.Since(start)))
	s.t.claims.Add(1)
	if len(recs) == 0 {
		s.t.emptyClaims.Add(1)
	}
	s.t.claimed.Add(int64(len(recs)))
	return recs, err
}

func (s timedStore) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	start := time.Now()
	err := s.Store.MarkDelivered(ctx, p)
	s.t.markNs.Add(int64(time.Since(start)))
	s.t.marks.Add(1)
	return err
}

// timedListener is a timedStore over a store that sends wake-ups: the
// relay must still find the capability.
type timedListener struct {
	timedStore
	l outbox.Listener
}

func (s timedListener) Listen(ctx context.Context) (<-chan struct{}, error) { return s.l.Listen(ctx) }

// timeStore wraps st so that t learns its calls, keeping its Listener.
func timeStore(st outbox.Store, t *timings) outbox.Store {
	ts := timedStore{Store: st, t: t}
	if l, ok := st.(outbox.Listener); ok {
		return timedListener{timedStore: ts, l: l}
	}
	return ts
}

// timedPublisher times Publish.
type timedPublisher struct {
	outbox.Publisher
	t *timings
}

func (p timedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	start := time.Now()
	res := p.Publisher.Publish(ctx, msgs)
	p.t.publishNs.Add(int64(time.Since(start)))
	p.t.publishes.Add(1)
	return res
}
