// Package lanetest plays a relay by hand in the outbox command's tests: it
// holds lanes of a store, and reads and settles their records, so that a
// test can put an outbox in a known state (dead letters, retries, relays
// holding lanes) without a relay's timing.
package lanetest

import (
	"context"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Lease is the lane lease of a Relay: longer than any test.
const Lease = time.Hour

// Relay holds lanes of a store as one relay owner.
type Relay struct {
	t     testing.TB
	Store outbox.Store
	Owner string
	// Lanes are the lanes it holds, with their epochs.
	Lanes []outbox.Lane
	// Count is the lane count of the outbox.
	Count int
}

// Hold makes owner a live relay of st holding the free lanes that pick
// accepts (every free lane when pick is nil). The relay leaves at the end
// of the test, if it has not left before.
func Hold(t testing.TB, st outbox.Store, owner string, pick func(lane, count int) bool) *Relay {
	t.Helper()
	ctx := context.Background()
	view, err := st.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: Lease})
	if err != nil {
		t.Fatalf("SyncLanes for %s: %v", owner, err)
	}
	var want []outbox.Lane
	for _, l := range view.Lanes {
		if l.Owner == "" && (pick == nil || pick(l.ID, len(view.Lanes))) {
			want = append(want, l.Lane)
		}
	}
	taken, err := st.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: Lease, Lanes: want})
	if err != nil || len(taken) != len(want) {
		t.Fatalf("TakeLanes for %s: took %d of %d lanes, %v", owner, len(taken), len(want), err)
	}
	r := &Relay{t: t, Store: st, Owner: owner, Lanes: taken, Count: len(view.Lanes)}
	t.Cleanup(r.Leave)
	return r
}

// LowerHalf and UpperHalf pick the lanes below and above the middle.
func LowerHalf(lane, count int) bool { return lane < count/2 }
func UpperHalf(lane, count int) bool { return lane >= count/2 }

// IDs returns the IDs of the lanes it holds.
func (r *Relay) IDs() []int {
	ids := make([]int, len(r.Lanes))
	for i, l := range r.Lanes {
		ids[i] = l.ID
	}
	return ids
}

// Holds reports whether the relay holds the lane of key (or, without a
// key, of id).
func (r *Relay) Holds(key, id string) bool {
	lane := outbox.LaneOf(key, id, r.Count)
	for _, l := range r.Lanes {
		if l.ID == lane {
			return true
		}
	}
	return false
}

// Read returns up to limit pending records of its lanes, in Seq order.
func (r *Relay) Read(limit int) []outbox.Record {
	r.t.Helper()
	recs, err := r.Store.Read(context.Background(), outbox.ReadParams{Lanes: r.IDs(), Limit: limit})
	if err != nil {
		r.t.Fatalf("Read for %s: %v", r.Owner, err)
	}
	return recs
}

// Deliver marks recs delivered.
func (r *Relay) Deliver(recs ...outbox.Record) {
	r.t.Helper()
	p := outbox.SettleParams{}
	for _, rec := range recs {
		p.Delivered = append(p.Delivered, rec.ID)
	}
	r.settle(p)
}

// Retry records a failed attempt of recs, to be tried again after delay.
func (r *Relay) Retry(reason string, delay time.Duration, recs ...outbox.Record) {
	r.t.Helper()
	p := outbox.SettleParams{}
	for _, rec := range recs {
		p.Retries = append(p.Retries, outbox.Retry{ID: rec.ID, Error: reason, Delay: delay})
	}
	r.settle(p)
}

// Dead dead-letters recs.
func (r *Relay) Dead(reason string, recs ...outbox.Record) {
	r.t.Helper()
	p := outbox.SettleParams{}
	for _, rec := range recs {
		p.Dead = append(p.Dead, outbox.Failure{ID: rec.ID, Error: reason})
	}
	r.settle(p)
}

func (r *Relay) settle(p outbox.SettleParams) {
	r.t.Helper()
	p.Lanes = r.Lanes
	if err := r.Store.Settle(context.Background(), p); err != nil {
		r.t.Fatalf("Settle for %s: %v", r.Owner, err)
	}
}

// Leave gives the lanes back and ends the relay's membership.
func (r *Relay) Leave() {
	if r.Lanes == nil {
		return
	}
	err := r.Store.ReleaseLanes(context.Background(), outbox.ReleaseLanesParams{Owner: r.Owner, Lanes: r.Lanes, Leave: true})
	if err != nil {
		r.t.Errorf("ReleaseLanes for %s: %v", r.Owner, err)
	}
	r.Lanes = nil
}
