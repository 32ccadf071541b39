package conformance

import (
	"fmt"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

var claimTests = []storeTest{
	{"RespectsLimit", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		for i := range 10 {
			write(t, ctx, ob, outbox.Message{Topic: "t", Key: keyName(i)})
		}
		first := claim(t, ctx, ob.Store, "a", 3, hour)
		rest := claim(t, ctx, ob.Store, "b", 100, hour)
		if len(first) != 3 || len(rest) != 7 {
			t.Fatalf("claimed %d then %d of 10 records with limits 3 and 100, want 3 and 7", len(first), len(rest))
		}
		for _, r := range first {
			if hasID(rest, r.ID) {
				t.Fatalf("record %s was claimed twice while leased", r.ID)
			}
		}
	}},
	{"EmptyOutbox", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		if recs := claim(t, ctx, ob.Store, "a", 10, hour); len(recs) != 0 {
			t.Fatalf("claimed %d records from an empty outbox", len(recs))
		}
	}},
	{"LeaseExcludesOthers", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"}, outbox.Message{Topic: "t"})
		a := claim(t, ctx, ob.Store, "a", 10, hour)
		if len(a) != 2 {
			t.Fatalf("claimed %d records, want 2", len(a))
		}
		if b := claim(t, ctx, ob.Store, "b", 10, hour); len(b) != 0 {
			t.Fatalf("owner b claimed %v while owner a holds the lease", recordIDs(b))
		}
		if again := claim(t, ctx, ob.Store, "a", 10, hour); len(again) != 0 {
			t.Fatalf("owner a claimed its own leased records again: %v", recordIDs(again))
		}
	}},
	{"ExpiredLeaseIsReclaimed", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		if a := claim(t, ctx, ob.Store, "a", 10, 200*time.Millisecond); len(a) != 1 || a[0].Attempts != 1 {
			t.Fatalf("first claim = %+v, want the record with Attempts 1", a)
		}
		var b []outbox.Record
		eventually(t, ctx, "the expired lease to be reclaimed", func() bool {
			b = claim(t, ctx, ob.Store, "b", 10, hour)
			return len(b) > 0
		})
		if len(b) != 1 || b[0].ID != msgs[0].ID || b[0].Attempts != 2 {
			t.Fatalf("reclaimed %+v, want record %s with Attempts 2 (attempts count at claim time)", b, msgs[0].ID)
		}
		// The old owner's late outcome must not undo the new lease.
		release(t, ctx, ob.Store, "a", b...)
		scheduleRetry(t, ctx, ob.Store, "a", "stale", 0, b...)
		if c := claim(t, ctx, ob.Store, "c", 10, hour); len(c) != 0 {
			t.Fatalf("the expired owner's Release/ScheduleRetry freed a record leased to another owner")
		}
	}},
	{"ConcurrentClaimersAreDisjoint", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		n := h.scale(400)
		var msgs []outbox.Message
		for i := range n {
			msgs = append(msgs, outbox.Message{Topic: "t", Key: keyName(i % (n / 4))})
		}
		write(t, ctx, ob, msgs...)
		var mu sync.Mutex
		claimedBy := make(map[string]string)
		var wg sync.WaitGroup
		for c := range 8 {
			owner := fmt.Sprintf("owner-%d", c)
			wg.Go(func() {
				for ctx.Err() == nil {
					recs, err := ob.Store.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: 7, Lease: hour})
					if err != nil {
						t.Errorf("%s: Claim: %v", owner, err)
						return
					}
					if len(recs) == 0 {
						mu.Lock()
						done := len(claimedBy) == n
						mu.Unlock()
						if done {
							return
						}
						time.Sleep(time.Millisecond) // others hold the rest; do not spin
						continue
					}
					mu.Lock()
					for _, r := range recs {
						if prev, dup := claimedBy[r.ID]; dup {
							t.Errorf("record %s claimed by %s and %s", r.ID, prev, owner)
						}
						claimedBy[r.ID] = owner
					}
					mu.Unlock()
					if err := ob.Store.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: owner, IDs: recordIDs(recs)}); err != nil {
						t.Errorf("%s: MarkDelivered: %v", owner, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if len(claimedBy) != n {
			t.Fatalf("%d of %d records were claimed", len(claimedBy), n)
		}
	}},
	{"ReleaseUndoesAttempt", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		a := claim(t, ctx, ob.Store, "a", 10, hour)
		release(t, ctx, ob.Store, "a", a...)
		b := claim(t, ctx, ob.Store, "b", 10, hour)
		if len(b) != 1 || b[0].Attempts != 1 {
			t.Fatalf("after Release, claimed %+v, want the record again with Attempts 1", b)
		}
	}},
	{"ReleaseWithDelayWaits", func(t *testing.T, h StoreHarness) {
		// The relay releases the records of a topic the broker cannot
		// take now with a delay: they must stay unclaimable until it has
		// passed, with their attempt undone, and hold back their key.
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		waiting := write(t, ctx, ob, newMessages("paused", "w", 2)...)
		other := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "o"})
		a := claim(t, ctx, ob.Store, "a", 10, hour)
		if len(a) != 3 {
			t.Fatalf("claimed %v, want all 3 records", recordIDs(a))
		}
		head, rest := pick(a, waiting[0].ID), without(a, waiting[0].ID)
		releaseAfter(t, ctx, ob.Store, "a", hour, head...)
		releaseAfter(t, ctx, ob.Store, "a", 0, rest...) // the relay's way: the key's successor without a delay
		b := claim(t, ctx, ob.Store, "b", 10, hour)
		if hasID(b, waiting[0].ID) {
			t.Fatalf("a record released with a delay of an hour was claimed at once")
		}
		if hasID(b, waiting[1].ID) {
			t.Fatalf("the successor of a record released with a delay was claimed while its predecessor waits")
		}
		if len(b) != 1 || b[0].ID != other[0].ID || b[0].Attempts != 1 {
			t.Fatalf("claimed %+v, want only record %s, released without a delay, with Attempts 1", b, other[0].ID)
		}

		// A short delay passes: the record comes back, its attempt undone,
		// before its successor.
		soon := write(t, ctx, ob, newMessages("paused", "s", 2)...)
		c := claim(t, ctx, ob.Store, "c", 10, hour)
		if len(c) != 2 {
			t.Fatalf("claimed %v, want the 2 new records", recordIDs(c))
		}
		releaseAfter(t, ctx, ob.Store, "c", 300*time.Millisecond, pick(c, soon[0].ID)...)
		releaseAfter(t, ctx, ob.Store, "c", 0, without(c, soon[0].ID)...)
		var d []outbox.Record
		eventually(t, ctx, "the record released with a short delay to be claimable", func() bool {
			d = claim(t, ctx, ob.Store, "d", 10, hour)
			if len(d) == 0 {
				return false
			}
			if d[0].ID != soon[0].ID {
				t.Fatalf("claimed %v while %s waited for its delay, want that record first", recordIDs(d), soon[0].ID)
			}
			return true
		})
		if d[0].Attempts != 1 {
			t.Fatalf("the record released with a delay came back with Attempts %d, want 1 (Release undoes the attempt)", d[0].Attempts)
		}
		if hasID(d, waiting[0].ID) || hasID(d, waiting[1].ID) {
			t.Fatalf("claimed %v, which holds a record still waiting for its delay of an hour (or its successor)", recordIDs(d))
		}
	}},
	{"MarkDeliveredIsFinalAndIdempotent", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"}, outbox.Message{Topic: "t", Key: "k"})
		a := claim(t, ctx, ob.Store, "a", 1, hour)
		// A relay that lost its lease still knows the broker has the message;
		// its MarkDelivered counts whoever holds the lease.
		markDelivered(t, ctx, ob.Store, "someone-else", a...)
		markDelivered(t, ctx, ob.Store, "a", a...)
		b := claim(t, ctx, ob.Store, "b", 10, hour)
		if len(b) != 1 || b[0].ID == a[0].ID {
			t.Fatalf("after delivery claimed %v, want only the second record", recordIDs(b))
		}
		markDelivered(t, ctx, ob.Store, "b", b...)
		if c := claim(t, ctx, ob.Store, "c", 10, hour); len(c) != 0 {
			t.Fatalf("claimed delivered records %v", recordIDs(c))
		}
		// Unknown IDs are ignored.
		if err := ob.Store.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "a", IDs: []string{outbox.NewID()}}); err != nil {
			t.Fatalf("MarkDelivered of an unknown ID: %v", err)
		}
	}},
	{"OutcomesAreFencedByOwner", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		a := claim(t, ctx, ob.Store, "a", 10, hour)
		release(t, ctx, ob.Store, "intruder", a...)
		scheduleRetry(t, ctx, ob.Store, "intruder", "x", 0, a...)
		deadLetter(t, ctx, ob.Store, "intruder", "x", a...)
		if b := claim(t, ctx, ob.Store, "b", 10, hour); len(b) != 0 {
			t.Fatalf("outcomes from an owner without the lease freed the record: %v", recordIDs(b))
		}
		markDelivered(t, ctx, ob.Store, "a", a...)
	}},
	{"RetryKeepsErrorAndWaits", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "soon"}, outbox.Message{Topic: "t", Key: "later"})
		a := claim(t, ctx, ob.Store, "a", 10, hour)
		if len(a) != 2 {
			t.Fatalf("claimed %d, want 2", len(a))
		}
		soon, later := a[0], a[1]
		if soon.Key != "soon" {
			soon, later = later, soon
		}
		scheduleRetry(t, ctx, ob.Store, "a", "broker said no", 0, soon)
		scheduleRetry(t, ctx, ob.Store, "a", "try in an hour", hour, later)
		b := claim(t, ctx, ob.Store, "b", 10, hour)
		if len(b) != 1 || b[0].ID != soon.ID {
			t.Fatalf("claimed %v, want only the record retried without delay", recordIDs(b))
		}
		if b[0].Attempts != 2 || b[0].LastError != "broker said no" {
			t.Fatalf("retried record has Attempts=%d LastError=%q, want 2 and the error", b[0].Attempts, b[0].LastError)
		}
	}},
}
