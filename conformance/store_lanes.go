package conformance

import (
	"slices"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// laneTests prove the lane leases: who may take a lane, how long it is
// held, and that outcomes are fenced by the lane's epoch.
var laneTests = []storeTest{
	{"LanesExistFree", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 8})
		v := (&relay{t: t, ctx: ctx, s: ob.Store, owner: "a", lease: hour}).view()
		if len(v.Lanes) != 8 {
			t.Fatalf("SyncLanes shows %d lanes; the outbox was created with 8", len(v.Lanes))
		}
		for i, l := range v.Lanes {
			if l.ID != i || l.Owner != "" {
				t.Fatalf("lane %d = %+v; want lane %d, free", i, l, i)
			}
		}
		if !slices.Contains(v.Relays, "a") {
			t.Fatalf("SyncLanes(owner a) lists relays %v; want a among them", v.Relays)
		}
		if v.Now.IsZero() {
			t.Fatalf("SyncLanes returned no store clock")
		}
	}},
	{"DefaultLaneCount", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		v := (&relay{t: t, ctx: ctx, s: ob.Store, owner: "a", lease: hour}).view()
		if len(v.Lanes) != outbox.DefaultLanes {
			t.Fatalf("SyncLanes shows %d lanes; want the default %d", len(v.Lanes), outbox.DefaultLanes)
		}
	}},
	{"RecordsCarryTheirKeysLane", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 8})
		var msgs []outbox.Message
		for i := range 40 {
			msgs = append(msgs, outbox.Message{Topic: "t", Key: keyName(i % 10)})
		}
		for range 20 {
			msgs = append(msgs, outbox.Message{Topic: "t"})
		}
		write(t, ctx, ob, msgs...)
		recs, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(8), Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != len(msgs) {
			t.Fatalf("read %d records of 8 lanes, want %d", len(recs), len(msgs))
		}
		unkeyed := make(map[int]bool)
		for _, r := range recs {
			if want := outbox.LaneOf(r.Key, r.ID, 8); r.Lane != want {
				t.Fatalf("record %s (key %q) is in lane %d; want LaneOf = %d", r.ID, r.Key, r.Lane, want)
			}
			if r.Key == "" {
				unkeyed[r.Lane] = true
			}
		}
		if len(unkeyed) < 2 {
			t.Fatalf("20 records without a key all went to lane(s) %v; they must spread over the lanes", unkeyed)
		}
	}},
	{"ReadSkipsByIDWhereASeqComesBack", func(t *testing.T, h StoreHarness) {
		// A relay's skip list can outlive a record: it read x, x was
		// delivered (deleted) while the next read was being built, and a
		// writer committed y then z of one key. Where a store gives x's
		// Seq to a later record (SQLite's rowid does, once the largest is
		// deleted), leaving out by that Seq alone would drop y and return
		// z: z would then go out before y.
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		r := hold(t, ctx, ob.Store, "a", hour)
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "x"})
		held := r.read(10)
		if len(held) != 1 {
			t.Fatalf("read %d records, want x", len(held))
		}
		x := held[0]
		r.deliverAndDelete(x)
		yz := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k", Payload: []byte("y")},
			outbox.Message{Topic: "t", Key: "k", Payload: []byte("z")})
		got := r.readWith(outbox.ReadParams{Limit: 10, SkipIDs: []string{x.ID}, SkipSeqs: outbox.SeqRanges([]int64{x.Seq})})
		if !equalStrings(recordIDs(got), []string{yz[0].ID, yz[1].ID}) {
			t.Fatalf("Read leaving out the delivered x (Seq %d) = %v; want y, z (%s, %s)", x.Seq, recordIDs(got), yz[0].ID, yz[1].ID)
		}
	}},
	{"ReadFiltersLanesInSeqOrder", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		for i := range 40 {
			write(t, ctx, ob, outbox.Message{Topic: "t", Key: keyName(i)})
		}
		all, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(4), Limit: 100})
		if err != nil || len(all) != 40 {
			t.Fatalf("Read(all lanes) = %d records, %v; want 40", len(all), err)
		}
		for i := 1; i < len(all); i++ {
			if all[i].Seq <= all[i-1].Seq {
				t.Fatalf("Read returned Seq %d after %d; want ascending Seq", all[i].Seq, all[i-1].Seq)
			}
		}
		some, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: []int{1, 3}, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, r := range all {
			if r.Lane == 1 || r.Lane == 3 {
				want = append(want, r.ID)
			}
		}
		if !equalStrings(recordIDs(some), want) {
			t.Fatalf("Read(lanes 1, 3) = %v; want the records of those lanes in Seq order %v", recordIDs(some), want)
		}
		after, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(4), AfterSeq: all[9].Seq, Limit: 5})
		if err != nil || !equalStrings(recordIDs(after), recordIDs(all[10:15])) {
			t.Fatalf("Read(AfterSeq of the 10th, Limit 5) = %v, %v; want records 11 to 15", recordIDs(after), err)
		}
		skip, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(4), SkipKeys: []string{all[0].Key, all[1].Key}, Limit: 100})
		if err != nil || len(skip) != 38 || hasID(skip, all[0].ID) || hasID(skip, all[1].ID) {
			t.Fatalf("Read(SkipKeys of two records) = %d records, %v; want the 38 others", len(skip), err)
		}
		held, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(4), SkipIDs: recordIDs(all[:30]), Limit: 5})
		if err != nil || !equalStrings(recordIDs(held), recordIDs(all[30:35])) {
			t.Fatalf("Read(SkipIDs of the first 30, Limit 5) = %v, %v; want records 31 to 35", recordIDs(held), err)
		}
		// The relay gives the held records' Seqs beside their IDs, which a
		// store with unique Seqs may test instead: held as one run, and as
		// every other record (runs of one, what a relay holds when other
		// relays' lanes lie between its records).
		var run, everyOther []int64
		var everyOtherIDs []string
		var rest []outbox.Record
		for i, r := range all[:30] {
			run = append(run, r.Seq)
			if i%2 == 0 {
				everyOther = append(everyOther, r.Seq)
				everyOtherIDs = append(everyOtherIDs, r.ID)
			} else {
				rest = append(rest, r)
			}
		}
		held, err = ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(4), SkipIDs: recordIDs(all[:30]), SkipSeqs: outbox.SeqRanges(run), Limit: 5})
		if err != nil || !equalStrings(recordIDs(held), recordIDs(all[30:35])) {
			t.Fatalf("Read(SkipIDs and SkipSeqs of the first 30, Limit 5) = %v, %v; want records 31 to 35", recordIDs(held), err)
		}
		held, err = ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(4), SkipIDs: everyOtherIDs, SkipSeqs: outbox.SeqRanges(everyOther), Limit: 5})
		if err != nil || !equalStrings(recordIDs(held), recordIDs(rest[:5])) {
			t.Fatalf("Read(SkipIDs and SkipSeqs of every other record, Limit 5) = %v, %v; want records 2, 4, 6, 8, 10", recordIDs(held), err)
		}
		again, err := ob.Store.Read(ctx, outbox.ReadParams{Lanes: allLanes(4), Limit: 100})
		if err != nil || !equalStrings(recordIDs(again), recordIDs(all)) {
			t.Fatalf("a second Read returned %d records, %v; Read must change nothing", len(again), err)
		}
		for _, r := range again {
			if r.Attempts != 0 {
				t.Fatalf("record %s has Attempts %d after two reads; reading is not an attempt", r.ID, r.Attempts)
			}
		}
	}},
	{"TakeIsExclusiveUntilExpiry", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		a := hold(t, ctx, ob.Store, "a", time.Second)
		if len(a.lanes) != 4 {
			t.Fatalf("owner a took %d of 4 free lanes", len(a.lanes))
		}
		b := hold(t, ctx, ob.Store, "b", hour)
		if len(b.lanes) != 0 {
			t.Fatalf("owner b took lanes %v that a holds until its lease ends", b.lanes)
		}
		// Even at the epoch a holds them, an unexpired lane is a's.
		if got := b.take(a.lanes, 0); len(got) != 0 {
			t.Fatalf("TakeLanes at the current epochs gave b %v while a's lease runs", got)
		}
		eventually(t, ctx, "a's lanes to expire and b to take them", func() bool {
			b.takeFree(0)
			return len(b.lanes) == 4
		})
		for _, l := range b.lanes {
			old := a.lanes[slices.IndexFunc(a.lanes, func(x outbox.Lane) bool { return x.ID == l.ID })]
			if l.Epoch == old.Epoch {
				t.Fatalf("lane %d changed hands at the same epoch %d; the epoch must change", l.ID, l.Epoch)
			}
		}
	}},
	{"ConcurrentTakersGetEachLaneOnce", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 16})
		v := (&relay{t: t, ctx: ctx, s: ob.Store, owner: "view", lease: time.Millisecond}).view()
		var want []outbox.Lane
		for _, l := range v.Lanes {
			want = append(want, l.Lane)
		}
		var mu sync.Mutex
		got := make(map[int][]string)
		var wg sync.WaitGroup
		for i := range 6 {
			owner := keyName(i)
			wg.Go(func() {
				taken, err := ob.Store.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: hour, Lanes: want})
				if err != nil {
					t.Errorf("TakeLanes(%s): %v", owner, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, l := range taken {
					got[l.ID] = append(got[l.ID], owner)
				}
			})
		}
		wg.Wait()
		for id := range 16 {
			if len(got[id]) != 1 {
				t.Fatalf("lane %d was taken by %v; want exactly one of the concurrent takers", id, got[id])
			}
		}
	}},
	{"SyncRenewsOnlyAtTheEpoch", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 2})
		lease := 2 * time.Second
		a := hold(t, ctx, ob.Store, "a", lease)
		if len(a.lanes) != 2 {
			t.Fatalf("owner a took %d of 2 lanes", len(a.lanes))
		}
		b := hold(t, ctx, ob.Store, "b", hour)
		// a renews past several leases: b never gets in.
		end := time.Now().Add(2 * lease)
		for time.Now().Before(end) {
			a.view()
			if got := b.takeFree(0); len(got) != 0 {
				t.Fatalf("b took %v while a renewed its lease", got)
			}
			time.Sleep(lease / 10)
		}
		// a stops renewing; c takes over with a short lease.
		c := hold(t, ctx, ob.Store, "c", lease)
		eventually(t, ctx, "c to take a's expired lanes", func() bool {
			c.takeFree(0)
			return len(c.lanes) == 2
		})
		// a renews with its stale epochs: that must not extend c's lease.
		stale := &relay{t: t, ctx: ctx, s: ob.Store, owner: "c", lease: hour, lanes: a.lanes}
		eventually(t, ctx, "c's lanes to expire although a stale renewal names them", func() bool {
			stale.view()
			a.view()
			b.takeFree(0)
			return len(b.lanes) == 2
		})
	}},
	{"ReleaseFreesAtOnce", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		a := hold(t, ctx, ob.Store, "a", hour)
		old := slices.Clone(a.lanes)
		a.release(false)
		b := hold(t, ctx, ob.Store, "b", hour)
		if len(b.lanes) != 4 {
			t.Fatalf("b took %d of 4 lanes that a released", len(b.lanes))
		}
		// a's late release at its old epochs frees nothing of b's.
		a.lanes = old
		a.release(false)
		if c := hold(t, ctx, ob.Store, "c", hour); len(c.lanes) != 0 {
			t.Fatalf("a stale ReleaseLanes freed lanes %v held by b", c.lanes)
		}
	}},
	{"RelaysComeAndGo", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 2})
		a := hold(t, ctx, ob.Store, "a", hour)
		short := hold(t, ctx, ob.Store, "short", 300*time.Millisecond)
		b := &relay{t: t, ctx: ctx, s: ob.Store, owner: "b", lease: hour}
		if v := b.view(); !slices.Contains(v.Relays, "a") || !slices.Contains(v.Relays, "b") {
			t.Fatalf("live relays %v; want a and b", v.Relays)
		}
		a.release(true)
		eventually(t, ctx, "the short-lived relay's membership to expire", func() bool {
			return !slices.Contains(b.view().Relays, short.owner)
		})
		if v := b.view(); !equalStrings(v.Relays, []string{"b"}) {
			t.Fatalf("after a left and short expired, live relays are %v; want just b", v.Relays)
		}
	}},
	{"SettleDelivers", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		write(t, ctx, ob, newMessages("t", "k", 3)...)
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "other"})
		a := hold(t, ctx, ob.Store, "a", hour)
		recs := a.read(10)
		if len(recs) != 4 {
			t.Fatalf("read %d records, want 4", len(recs))
		}
		a.deliver(recs[:2]...)
		a.deliver(recs[:2]...) // idempotent
		if got := a.read(10); !equalStrings(recordIDs(got), recordIDs(recs[2:])) {
			t.Fatalf("after delivering two, read %v; want %v", recordIDs(got), recordIDs(recs[2:]))
		}
	}},
	{"SettleDeletesUnlessRetained", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		write(t, ctx, ob, newMessages("t", "k", 4)...)
		a := hold(t, ctx, ob.Store, "a", hour)
		recs := a.read(10)
		a.deliverAndDelete(recs[:2]...)
		a.deliverAndDelete(recs[:2]...) // idempotent
		a.deliver(recs[2])
		if got := a.read(10); len(got) != 1 || got[0].ID != recs[3].ID {
			t.Fatalf("after three deliveries read %v; want just %s", recordIDs(got), recs[3].ID)
		}
		c, ok := ob.Store.(outbox.Cleaner)
		if !ok {
			return
		}
		// Only the retained delivery is left for Cleanup.
		var deleted int
		eventually(t, ctx, "Cleanup to delete the retained delivery", func() bool {
			n, err := c.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Millisecond, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			deleted += n
			return deleted > 0
		})
		if deleted != 1 {
			t.Fatalf("Cleanup deleted %d records; want 1: records delivered without Retain are deleted by Settle itself", deleted)
		}
	}},
	{"RetryKeepsErrorAndDelay", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		a := hold(t, ctx, ob.Store, "a", hour)
		recs := a.read(10)
		before := time.Now()
		a.retry("broker said no", time.Hour, recs...)
		got := a.read(10)
		if len(got) != 1 || got[0].Attempts != 1 || got[0].LastError != "broker said no" {
			t.Fatalf("after a retry read %+v; want the record with Attempts 1 and its error", got)
		}
		if nb := got[0].NotBefore; nb.Before(before.Add(59*time.Minute)) || nb.After(before.Add(61*time.Minute)) {
			t.Fatalf("NotBefore = %v after a retry of 1h at %v; want about an hour later", nb, before)
		}
		a.dead("gave up", got...)
		if rest := a.read(10); len(rest) != 0 {
			t.Fatalf("a dead letter is still read: %v", recordIDs(rest))
		}
	}},
	{"LateSettleAfterTakeoverChangesNothing", func(t *testing.T, h StoreHarness) {
		// Race 1: relay a read k#1 and k#2, its lease expired, relay b took
		// the lane over. a's late outcomes (a retry of k#1 and a delivery
		// of k#2, say) must change nothing: b must see both records as
		// they were, or k#2 would go out while k#1 waits.
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 1})
		write(t, ctx, ob, newMessages("t", "k", 2)...)
		a := hold(t, ctx, ob.Store, "a", 300*time.Millisecond)
		recs := a.read(10)
		if len(recs) != 2 {
			t.Fatalf("a read %d records, want 2", len(recs))
		}
		b := hold(t, ctx, ob.Store, "b", hour)
		eventually(t, ctx, "b to take a's expired lane", func() bool {
			b.takeFree(0)
			return len(b.lanes) == 1
		})
		a.retry("late", time.Hour, recs[0])
		a.deliver(recs[1])
		a.dead("late", recs[0])
		got := b.read(10)
		if !equalStrings(recordIDs(got), recordIDs(recs)) {
			t.Fatalf("after a's late settle, b reads %v; want both %v untouched", recordIDs(got), recordIDs(recs))
		}
		for _, r := range got {
			if r.Attempts != 0 || r.LastError != "" || !r.NotBefore.IsZero() {
				t.Fatalf("record %s = attempts %d error %q not before %v after a stale settle; want it untouched", r.ID, r.Attempts, r.LastError, r.NotBefore)
			}
		}
	}},
	{"SettleIsFencedByEpochNotOwner", func(t *testing.T, h StoreHarness) {
		// Race 3: two workers of one relay share its owner name. The first
		// read under epoch e1; the lease expired; the same owner took the
		// lane again (e2). The first worker's late settle carries e1: it
		// must change nothing, although the owner name matches.
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 1})
		write(t, ctx, ob, newMessages("t", "k", 2)...)
		a := hold(t, ctx, ob.Store, "a", 300*time.Millisecond)
		recs := a.read(10)
		old := slices.Clone(a.lanes)
		again := &relay{t: t, ctx: ctx, s: ob.Store, owner: "a", lease: hour}
		eventually(t, ctx, "the lane to expire and its owner to take it again", func() bool {
			again.takeFree(0)
			return len(again.lanes) == 1
		})
		if again.lanes[0].Epoch == old[0].Epoch {
			t.Fatalf("taking an expired lane kept epoch %d", old[0].Epoch)
		}
		late := &relay{t: t, ctx: ctx, s: ob.Store, owner: "a", lease: hour, lanes: old}
		late.deliver(recs...)
		if got := again.read(10); len(got) != 2 {
			t.Fatalf("a settle at the old epoch delivered %d records under the new one", 2-len(got))
		}
		again.deliver(recs[0])
		if got := again.read(10); len(got) != 1 || got[0].ID != recs[1].ID {
			t.Fatalf("a settle at the current epoch left %v; want just %s", recordIDs(got), recs[1].ID)
		}
	}},
	{"SettleAfterExpiryWithoutTakeoverApplies", func(t *testing.T, h StoreHarness) {
		// Nobody took the lane: the epoch is unchanged, so the outcome of
		// a slow relay still counts (no duplicate is needed).
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 1})
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		a := hold(t, ctx, ob.Store, "a", 100*time.Millisecond)
		recs := a.read(10)
		time.Sleep(200 * time.Millisecond) // the lease runs out; nothing is asserted about time
		a.deliver(recs...)
		if got := a.read(10); len(got) != 0 {
			t.Fatalf("a settle after the lease ran out, with no takeover, was ignored")
		}
	}},
	{"TakeoverChargesAnAttempt", func(t *testing.T, h StoreHarness) {
		// A relay that dies may have had its first records in flight: the
		// relay that takes its expired lanes charges them one attempt, so
		// that a message that crashes relays ends among the dead letters.
		// A record waiting out a retry delay was not in flight and is not
		// charged; a released lane charges nothing.
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Lanes: 4})
		waiting := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "waiting"})
		for i := range 5 {
			write(t, ctx, ob, outbox.Message{Topic: "t", Key: keyName(i)})
		}
		a := hold(t, ctx, ob.Store, "a", 200*time.Millisecond)
		// The oldest record waits out a retry delay: it was not in flight
		// when a died, and is neither charged nor counted.
		a.retry("broker said no", time.Hour, pick(a.read(10), waiting[0].ID)...)
		order := without(a.read(10), waiting[0].ID)
		b := hold(t, ctx, ob.Store, "b", hour)
		eventually(t, ctx, "b to take a's expired lanes", func() bool {
			b.takeFree(3)
			return len(b.lanes) == 4
		})
		got := b.read(10)
		if len(got) == 0 || got[0].ID != waiting[0].ID || got[0].Attempts != 1 {
			t.Fatalf("after the takeover the waiting record reads %+v; want it first, with only its own failed attempt", got[:min(len(got), 1)])
		}
		got = got[1:]
		for i, r := range got {
			want := 0
			if i < 3 {
				want = 1
			}
			if r.ID != order[i].ID || r.Attempts != want {
				t.Fatalf("after a takeover with Charge 3, record %d (%s) has Attempts %d; want the first 3 in Seq order charged once: %+v", i, r.ID, r.Attempts, got)
			}
		}
		b.release(false)
		c := hold(t, ctx, ob.Store, "c", hour)
		c.takeFree(3)
		for i, r := range without(c.read(10), waiting[0].ID) {
			if r.Attempts != got[i].Attempts {
				t.Fatalf("taking released lanes changed Attempts of %s from %d to %d; a release charges nothing", r.ID, got[i].Attempts, r.Attempts)
			}
		}
	}},
}
