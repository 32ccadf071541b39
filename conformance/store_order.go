package conformance

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

var orderTests = []storeTest{
	{"SuccessorWaitsForPredecessor", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		k1 := write(t, ctx, ob, newMessages("t", "k1", 3)...)
		k2 := write(t, ctx, ob, newMessages("t", "k2", 1)...)
		a := claim(t, ctx, ob.Store, "a", 1, hour)
		if len(a) != 1 || a[0].ID != k1[0].ID {
			t.Fatalf("first claim with limit 1 = %v, want the oldest record %s", recordIDs(a), k1[0].ID)
		}
		b := claim(t, ctx, ob.Store, "b", 10, hour)
		if hasID(b, k1[1].ID) || hasID(b, k1[2].ID) {
			t.Fatalf("owner b claimed a successor of k1 while its predecessor is leased to a: %v", recordIDs(b))
		}
		if !hasID(b, k2[0].ID) {
			t.Fatalf("owner b claimed %v; the other key k2 must stay claimable", recordIDs(b))
		}
		markDelivered(t, ctx, ob.Store, "a", a...)
		c := claim(t, ctx, ob.Store, "c", 10, hour)
		if len(c) == 0 || c[0].ID != k1[1].ID {
			t.Fatalf("after k1's first record was delivered, claimed %v; want k1's second %s first", recordIDs(c), k1[1].ID)
		}
	}},
	{"ClaimReturnsKeyPrefixInOrder", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		want := make(map[string][]string)
		for i := range 30 {
			key := fmt.Sprintf("k%d", i%3)
			m := write(t, ctx, ob, outbox.Message{Topic: "t", Key: key})
			want[key] = append(want[key], m[0].ID)
		}
		recs := claim(t, ctx, ob.Store, "a", 100, hour)
		got := make(map[string][]string)
		for _, r := range recs {
			got[r.Key] = append(got[r.Key], r.ID)
		}
		for key, ids := range got {
			if !equalStrings(ids, want[key][:len(ids)]) {
				t.Fatalf("claimed records of %s are %v; want a prefix of %v in write order", key, ids, want[key])
			}
		}
		var seen int
		for _, ids := range got {
			seen += len(ids)
		}
		if seen == 0 {
			t.Fatalf("claimed nothing")
		}
	}},
	{"ConcurrentClaimersKeepKeyOrder", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		keys, perKey := 6, h.scale(40)
		written := make(map[string][]string)
		for i := range perKey {
			var batch []outbox.Message
			for k := range keys {
				batch = append(batch, outbox.Message{Topic: "t", Key: keyName(k), Payload: []byte(fmt.Sprint(i))})
			}
			for _, m := range write(t, ctx, ob, batch...) {
				written[m.Key] = append(written[m.Key], m.ID)
			}
		}
		position := make(map[string]int) // record ID -> index within its key
		for _, ids := range written {
			for i, id := range ids {
				position[id] = i
			}
		}
		// next[key] is the index of the key's oldest undelivered record. A
		// claimer that gets records of a key must get them starting there.
		var mu sync.Mutex
		next := make(map[string]int)
		delivered := 0
		total := keys * perKey
		var wg sync.WaitGroup
		for c := range 4 {
			owner := fmt.Sprintf("claimer-%d", c)
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			wg.Go(func() {
				for ctx.Err() == nil {
					recs, err := ob.Store.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: 1 + rng.IntN(8), Lease: hour})
					if err != nil {
						t.Errorf("%s: Claim: %v", owner, err)
						return
					}
					mu.Lock()
					if delivered == total {
						mu.Unlock()
						return
					}
					// Deliver a random prefix of each key's records, release the rest.
					var deliver, giveBack []outbox.Record
					heldKeys := make(map[string]bool) // once one record of a key goes back, its successors do too
					expect := make(map[string]int)
					for _, r := range recs {
						if _, ok := expect[r.Key]; !ok {
							expect[r.Key] = next[r.Key]
						}
						if got := position[r.ID]; got != expect[r.Key] {
							t.Errorf("%s claimed record %d of %s while record %d was its oldest undelivered one", owner, got, r.Key, expect[r.Key])
						}
						expect[r.Key]++
						if heldKeys[r.Key] || rng.IntN(5) == 0 {
							heldKeys[r.Key] = true
							giveBack = append(giveBack, r)
						} else {
							deliver = append(deliver, r)
							next[r.Key]++
							delivered++
						}
					}
					mu.Unlock()
					if t.Failed() {
						return
					}
					if len(recs) == 0 {
						time.Sleep(time.Millisecond) // the rest is leased to others; do not spin
						continue
					}
					if err := ob.Store.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: owner, IDs: recordIDs(deliver)}); err != nil {
						t.Errorf("%s: MarkDelivered: %v", owner, err)
						return
					}
					if err := ob.Store.Release(ctx, outbox.ReleaseParams{Owner: owner, IDs: recordIDs(giveBack)}); err != nil {
						t.Errorf("%s: Release: %v", owner, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if !t.Failed() && delivered != total {
			t.Fatalf("delivered %d of %d records", delivered, total)
		}
	}},
	{"RetryHoldsBackKey", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", 2)...)
		a := claim(t, ctx, ob.Store, "a", 10, hour)
		if len(a) == 0 || a[0].ID != msgs[0].ID {
			t.Fatalf("claimed %v, want %s first", recordIDs(a), msgs[0].ID)
		}
		scheduleRetry(t, ctx, ob.Store, "a", "failed", hour, a[0])
		release(t, ctx, ob.Store, "a", a[1:]...)
		if b := claim(t, ctx, ob.Store, "b", 10, hour); len(b) != 0 {
			t.Fatalf("claimed %v while the key's first record waits for its retry", recordIDs(b))
		}
	}},
	{"DeadLetterLetsKeyContinue", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", 2)...)
		a := claim(t, ctx, ob.Store, "a", 1, hour)
		deadLetter(t, ctx, ob.Store, "a", "poison", a...)
		b := claim(t, ctx, ob.Store, "b", 10, hour)
		if len(b) != 1 || b[0].ID != msgs[1].ID {
			t.Fatalf("after the first record died, claimed %v; want the second %s (default: the key continues)", recordIDs(b), msgs[1].ID)
		}
	}},
	{"StrictOrderHoldsKeyUntilReplay", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", 2)...)
		other := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "other"})
		a := claimStrict(t, ctx, ob.Store, "a", 1, hour, true)
		deadLetter(t, ctx, ob.Store, "a", "poison", a...)
		b := claimStrict(t, ctx, ob.Store, "b", 10, hour, true)
		if hasID(b, msgs[1].ID) || !hasID(b, other[0].ID) {
			t.Fatalf("in strict order, claimed %v; want %s held back behind its dead predecessor, and %s", recordIDs(b), msgs[1].ID, other[0].ID)
		}
		dls, ok := ob.Store.(outbox.DeadLetterStore)
		if !ok {
			return // replay is tested with the DeadLetterStore capability
		}
		if n, err := dls.ReplayDead(ctx, outbox.SelectDead{IDs: []string{msgs[0].ID}}); err != nil || n != 1 {
			t.Fatalf("ReplayDead = %d, %v; want 1", n, err)
		}
		c := claimStrict(t, ctx, ob.Store, "c", 10, hour, true)
		if len(c) == 0 || c[0].ID != msgs[0].ID {
			t.Fatalf("after replay, claimed %v; want the replayed %s first", recordIDs(c), msgs[0].ID)
		}
	}},
	{"BlockedBacklogDoesNotStallOthers", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		// A deep backlog of one key whose oldest record waits an hour for
		// its retry, written before everything else: a claim that scans a
		// bounded window of the oldest records must still look past it.
		clog := write(t, ctx, ob, newMessages("t", "clog", h.scale(3000))...)
		a := claim(t, ctx, ob.Store, "a", 1, hour)
		if len(a) != 1 || a[0].ID != clog[0].ID {
			t.Fatalf("claimed %v, want the oldest record %s", recordIDs(a), clog[0].ID)
		}
		scheduleRetry(t, ctx, ob.Store, "a", "broker said no", hour, a...)
		later := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "other"}, outbox.Message{Topic: "t"})
		b := claim(t, ctx, ob.Store, "b", 10, hour)
		if len(b) != 2 || !hasID(b, later[0].ID) || !hasID(b, later[1].ID) {
			t.Fatalf("claimed %v behind a blocked backlog; want the two later records %v", recordIDs(b), messageIDs(later))
		}
	}},
	{"EmptyKeyIsUnordered", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		write(t, ctx, ob, newMessages("t", "", 3)...)
		a := claim(t, ctx, ob.Store, "a", 1, hour)
		scheduleRetry(t, ctx, ob.Store, "a", "failed", hour, a...)
		if b := claim(t, ctx, ob.Store, "b", 10, hour); len(b) != 2 {
			t.Fatalf("claimed %d records without key behind a waiting one, want 2: an empty key orders nothing", len(b))
		}
	}},
	{"LateCommitLeavesNoGap", func(t *testing.T, h StoreHarness) {
		requireConcurrentWriters(t, h)
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
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
}
