package conformance

import (
	"slices"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

// orderTests prove what per-key order rests on in the store: a key's
// records share one lane, a lane has one holder at a time, reads come in
// Seq order and see late commits, and dead letters hold a key back only
// in strict order.
var orderTests = []storeTest{
	{"KeyStaysInItsLane", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 16})
		for range 3 {
			for k := range 20 {
				write(t, ctx, ob, outbox.Message{Topic: "t", Key: keyName(k)})
			}
		}
		recs, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(16), Limit: 100})
		if err != nil || len(recs) != 60 {
			t.Fatalf("Read = %d records, %v; want 60", len(recs), err)
		}
		lane := make(map[string]int)
		for _, r := range recs {
			if l, ok := lane[r.Key]; ok && l != r.Lane {
				t.Fatalf("key %s has records in lanes %d and %d; a key must stay in one lane", r.Key, l, r.Lane)
			}
			lane[r.Key] = r.Lane
		}
	}},
	{"SameKeyWritersShareOneHolder", func(t *testing.T, h StoreHarness) {
		// Race 2: T1 enqueues k (lower Seq) and stays open, T2 enqueues k
		// and commits, relay a reads T2's record; T1 commits. No other
		// relay may read k's lane while a holds it, and a's next read from
		// the head finds T1's record: both records of k go through a, in
		// commit order.
		requireConcurrentWriters(t, h)
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		t1, err := ob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = t1.Rollback(ctx) }()
		first := newMessages("t", "k", 1)
		if err := t1.Enqueue(ctx, first...); err != nil {
			t.Fatal(err)
		}
		second := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k", Payload: []byte("second")})
		a := hold(t, ctx, ob.Store, "a", hour)
		got := a.read(10)
		if len(got) != 1 || got[0].ID != second[0].ID {
			t.Fatalf("a read %v; want T2's committed record %s", recordIDs(got), second[0].ID)
		}
		if err := t1.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		b := hold(t, ctx, ob.Store, "b", hour)
		lane := outbox.LaneOf("k", "", 4)
		for _, l := range b.lanes {
			if l.ID == lane {
				t.Fatalf("relay b took lane %d of key k while a holds it: both records of k would be in flight on two relays", lane)
			}
		}
		held := a.lanes[slices.IndexFunc(a.lanes, func(l outbox.Lane) bool { return l.ID == lane })]
		if got := b.take([]outbox.Lane{held}, 0); len(got) != 0 {
			t.Fatalf("relay b took lane %d of key k while a holds it", lane)
		}
		again := a.read(10)
		if !hasID(again, first[0].ID) {
			t.Fatalf("after T1 committed, a reads %v from the head; want T1's record %s too (no gap below a record already read)", recordIDs(again), first[0].ID)
		}
	}},
	{"LateCommitLeavesNoGap", func(t *testing.T, h StoreHarness) {
		requireConcurrentWriters(t, h)
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		late, err := ob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = late.Rollback(ctx) }()
		lateMsgs := newMessages("t", "late", 1)
		if err := late.Enqueue(ctx, lateMsgs...); err != nil { // takes the lower sequence
			t.Fatal(err)
		}
		early := write(t, ctx, ob, newMessages("t", "early", 5)...)
		if got := drain(t, ctx, ob.Store, "a"); len(got) != len(early) {
			t.Fatalf("drained %d records, want the %d committed ones", len(got), len(early))
		}
		if err := late.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		got := drain(t, ctx, ob.Store, "a")
		if len(got) != 1 || got[0].ID != lateMsgs[0].ID {
			t.Fatalf("after the late commit, drained %v; want %s, committed below records already delivered", recordIDs(got), lateMsgs[0].ID)
		}
	}},
	{"DeadLetterLetsKeyContinue", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", 2)...)
		a := hold(t, ctx, ob.Store, "a", hour)
		a.dead("poison", a.read(1)...)
		b := a.read(10)
		if len(b) != 1 || b[0].ID != msgs[1].ID {
			t.Fatalf("after the first record died, read %v; want the second %s (default: the key continues)", recordIDs(b), msgs[1].ID)
		}
	}},
	{"StrictOrderHoldsKeyUntilReplay", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", 2)...)
		other := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "other"})
		unkeyed := write(t, ctx, ob, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"})
		a := hold(t, ctx, ob.Store, "a", hour)
		a.dead("poison", a.read(1)...)
		a.dead("poison", pick(a.read(10), unkeyed[0].ID)...)
		b := a.readWith(outbox.ReadParams{Limit: 10, StrictOrder: true})
		if hasID(b, msgs[1].ID) || !hasID(b, other[0].ID) || !hasID(b, unkeyed[1].ID) {
			t.Fatalf("in strict order, read %v; want %s held back behind its dead predecessor, and %s and %s (no key: nothing held)", recordIDs(b), msgs[1].ID, other[0].ID, unkeyed[1].ID)
		}
		dls, ok := ob.Store.(outbox.DeadLetterStore)
		if !ok {
			return // replay is tested with the DeadLetterStore capability
		}
		if n, err := dls.ReplayDead(ctx, outbox.SelectDead{IDs: []string{msgs[0].ID}}); err != nil || n != 1 {
			t.Fatalf("ReplayDead = %d, %v; want 1", n, err)
		}
		c := a.readWith(outbox.ReadParams{Limit: 10, StrictOrder: true})
		if len(c) < 2 || c[0].ID != msgs[0].ID || c[1].ID != msgs[1].ID {
			t.Fatalf("after replay, read %v in strict order; want the replayed %s, then %s", recordIDs(c), msgs[0].ID, msgs[1].ID)
		}
	}},
	{"SkipKeysLooksPastABlockedBacklog", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 1})
		// A deep backlog of one key whose oldest record waits for a retry
		// in the relay's memory, written before everything else: a read
		// that leaves the key out must find the later records at once.
		write(t, ctx, ob, newMessages("t", "clog", h.scale(3000))...)
		later := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "other"}, outbox.Message{Topic: "t"})
		a := hold(t, ctx, ob.Store, "a", hour)
		got := a.readWith(outbox.ReadParams{Limit: 10, SkipKeys: []string{"clog"}})
		if !equalStrings(recordIDs(got), messageIDs(later)) {
			t.Fatalf("read %v past a skipped backlog; want the two later records %v", recordIDs(got), messageIDs(later))
		}
	}},
}
