package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

var deadLetterTests = []storeTest{
	{"ListReplayPurge", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		dls := needCapability[outbox.DeadLetterStore](t, ob.Store, "DeadLetterStore")
		var msgs []outbox.Message
		for i := range 3 {
			msgs = append(msgs, write(t, ctx, ob, outbox.Message{Topic: "t", Key: keyName(i), Payload: []byte{byte(i)}})...)
		}
		alive := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "alive"})
		a := hold(t, ctx, ob.Store, "a", hour)
		for _, r := range a.read(10) {
			if r.ID != alive[0].ID {
				a.dead("rejected: "+r.Key, r)
			}
		}

		list, err := dls.ListDead(ctx, outbox.ListDeadParams{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 3 {
			t.Fatalf("ListDead returned %d dead letters, want 3", len(list))
		}
		for i, d := range list {
			if d.ID != msgs[i].ID || d.LastError != "rejected: "+msgs[i].Key || d.DeadAt.IsZero() || d.Payload[0] != byte(i) {
				t.Fatalf("dead letter %d = %+v; want %s in write order with its error, payload and DeadAt", i, d, msgs[i].ID)
			}
		}
		page, err := dls.ListDead(ctx, outbox.ListDeadParams{AfterSeq: list[0].Seq, AfterID: list[0].ID, Limit: 1})
		if err != nil || len(page) != 1 || page[0].ID != msgs[1].ID {
			t.Fatalf("ListDead(AfterSeq first, Limit 1) = %v, %v; want the second dead letter", page, err)
		}
		one, err := dls.ListDead(ctx, outbox.ListDeadParams{IDs: []string{msgs[2].ID}})
		if err != nil || len(one) != 1 || one[0].ID != msgs[2].ID {
			t.Fatalf("ListDead(IDs) = %v, %v; want just %s", one, err, msgs[2].ID)
		}
		if n, err := dls.ReplayDead(ctx, outbox.SelectDead{IDs: []string{msgs[0].ID, alive[0].ID}}); err != nil || n != 1 {
			t.Fatalf("ReplayDead(one dead, one alive) = %d, %v; want 1", n, err)
		}
		got := a.read(10)
		if !hasID(got, msgs[0].ID) || !hasID(got, alive[0].ID) || len(got) != 2 {
			t.Fatalf("after replay read %v; want the replayed and the live record", recordIDs(got))
		}
		for _, r := range got {
			if r.ID == msgs[0].ID && (r.Attempts != 0 || !r.NotBefore.IsZero()) {
				t.Fatalf("replayed record has Attempts %d, NotBefore %v; want 0 and none (replay resets them)", r.Attempts, r.NotBefore)
			}
		}
		if n, err := dls.PurgeDead(ctx, outbox.SelectDead{All: true}); err != nil || n != 2 {
			t.Fatalf("PurgeDead(All) = %d, %v; want 2", n, err)
		}
		if list, err := dls.ListDead(ctx, outbox.ListDeadParams{}); err != nil || len(list) != 0 {
			t.Fatalf("after purge ListDead = %d, %v; want none", len(list), err)
		}
		if n, err := dls.ReplayDead(ctx, outbox.SelectDead{All: true}); err != nil || n != 0 {
			t.Fatalf("ReplayDead(All) with no dead letters = %d, %v; want 0", n, err)
		}
	}},
	{"LateDeliveryLeavesDeadLetterAlone", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		dls := needCapability[outbox.DeadLetterStore](t, ob.Store, "DeadLetterStore")
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		a := hold(t, ctx, ob.Store, "a", hour)
		recs := a.read(1)
		a.dead("timed out", recs...)
		// A late delivery of a dead letter changes nothing: it stays
		// dead, for an operator to replay or purge.
		a.deliver(recs...)
		if list, err := dls.ListDead(ctx, outbox.ListDeadParams{}); err != nil || len(list) != 1 {
			t.Fatalf("ListDead = %d, %v after a late delivery of the dead letter; want it still there", len(list), err)
		}
	}},
	{"WaitingBehindDead", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		wb := needCapability[outbox.DeadLetterBacklog](t, ob.Store, "DeadLetterBacklog")
		// deadOne writes a message of key and dead-letters it.
		r := hold(t, ctx, ob.Store, "a", hour)
		deadOne := func(key string) string {
			m := write(t, ctx, ob, outbox.Message{Topic: "t", Key: key})
			recs := r.read(10)
			if len(recs) != 1 || recs[0].ID != m[0].ID {
				t.Fatalf("read %v; want just %s", recordIDs(recs), m[0].ID)
			}
			r.dead("rejected", recs...)
			return m[0].ID
		}
		// Dead letters of keys a, d, b and of no key.
		a, d, b := deadOne("a"), deadOne("d"), deadOne("b")
		deadOne("")
		// Key d went on: a later message delivered.
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "d"})
		r.deliver(r.read(1)...)
		// Pending now: two messages of a, one of d, none of b, one without
		// a key (which nothing holds back), one of c (which has no dead
		// letter).
		write(t, ctx, ob, newMessages("t", "a", 2)...)
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "d"}, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t", Key: "c"})

		for _, c := range []struct {
			sel  outbox.SelectDead
			want outbox.Waiting
		}{
			{outbox.SelectDead{All: true}, outbox.Waiting{Records: 3, Keys: 2}},
			{outbox.SelectDead{IDs: []string{a}}, outbox.Waiting{Records: 2, Keys: 1}},
			{outbox.SelectDead{IDs: []string{a, d, b}}, outbox.Waiting{Records: 3, Keys: 2}},
			{outbox.SelectDead{IDs: []string{b}}, outbox.Waiting{}},
			{outbox.SelectDead{IDs: []string{"0190aaaa-0000-7000-8000-000000000000"}}, outbox.Waiting{}},
			{outbox.SelectDead{}, outbox.Waiting{}},
		} {
			got, err := wb.WaitingBehindDead(ctx, c.sel)
			if err != nil || got != c.want {
				t.Errorf("WaitingBehindDead(%+v) = %+v, %v; want %+v", c.sel, got, err, c.want)
			}
		}
	}},
}

var capabilityTests = []storeTest{
	{"CleanupIsBounded", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		c := needCapability[outbox.Cleaner](t, ob.Store, "Cleaner")
		write(t, ctx, ob, newMessages("t", "k", 10)...)
		drain(t, ctx, ob.Store, "a")
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "pending"}, outbox.Message{Topic: "t", Key: "dead"})
		a := hold(t, ctx, ob.Store, "a", hour)
		for _, r := range a.read(10) {
			if r.Key == "dead" {
				a.dead("x", r)
			}
		}
		if n, err := c.Cleanup(ctx, outbox.CleanupParams{OlderThan: hour, Limit: 100}); err != nil || n != 0 {
			t.Fatalf("Cleanup(older than 1h) = %d, %v; want 0: nothing was delivered that long ago", n, err)
		}
		var total []int
		eventually(t, ctx, "cleanup of records delivered more than 1ms ago", func() bool {
			n, err := c.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Millisecond, Limit: 4})
			if err != nil {
				t.Fatal(err)
			}
			if n > 4 {
				t.Fatalf("Cleanup(Limit 4) deleted %d", n)
			}
			if n > 0 {
				total = append(total, n)
			}
			return sum(total) >= 10
		})
		if sum(total) != 10 {
			t.Fatalf("Cleanup deleted %v, want 10 in all", total)
		}
		got := a.read(10)
		if len(got) != 1 || got[0].Key != "pending" {
			t.Fatalf("after cleanup read %v; the pending record must survive", recordIDs(got))
		}
		if dls, ok := ob.Store.(outbox.DeadLetterStore); ok {
			if list, _ := dls.ListDead(ctx, outbox.ListDeadParams{}); len(list) != 1 {
				t.Fatalf("cleanup removed a dead letter")
			}
		}
	}},
	{"Stats", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		sr := needCapability[outbox.StatsReader](t, ob.Store, "StatsReader")
		if st, err := sr.Stats(ctx); err != nil || st.Pending != 0 || !st.OldestPending.IsZero() {
			t.Fatalf("Stats of an empty outbox = %+v, %v", st, err)
		}
		oldest := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "old", CreatedAt: oldest})
		write(t, ctx, ob, newMessages("t", "k", 4)...)
		write(t, ctx, ob, outbox.Message{Topic: "t", Key: "dead"}, outbox.Message{Topic: "t", Key: "retry"})
		a := hold(t, ctx, ob.Store, "a", hour)
		for _, r := range a.read(10) {
			switch r.Key {
			case "dead":
				a.dead("x", r)
			case "retry":
				a.retry("x", hour, r)
			}
		}
		st, err := sr.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != 6 || st.Dead != 1 || st.Retrying != 1 {
			t.Fatalf("Stats = pending %d dead %d retrying %d; want 6, 1, 1", st.Pending, st.Dead, st.Retrying)
		}
		if st.OldestPending.Sub(oldest).Abs() > time.Millisecond {
			t.Fatalf("OldestPending = %v, want %v", st.OldestPending, oldest)
		}
		if st.Lanes != outbox.DefaultLanes {
			t.Fatalf("Stats.Lanes = %d, want %d", st.Lanes, outbox.DefaultLanes)
		}
		if len(st.Relays) != 1 || st.Relays[0].Owner != "a" || st.Relays[0].Lanes != outbox.DefaultLanes || st.Relays[0].Until.Before(time.Now()) {
			t.Fatalf("Relays = %+v, want owner a holding every lane, live into the future", st.Relays)
		}
		if len(st.Lagging) == 0 || st.Lagging[0].Lane != outbox.LaneOf("old", "", outbox.DefaultLanes) ||
			st.Lagging[0].Owner != "a" || st.Lagging[0].OldestPending.Sub(oldest).Abs() > time.Millisecond || st.Lagging[0].Pending < 1 {
			t.Fatalf("Lagging = %+v; want the lane of key old first, held by a, with its oldest record", st.Lagging)
		}
		var lagging int64
		for i, l := range st.Lagging {
			lagging += l.Pending
			if i > 0 && l.OldestPending.Before(st.Lagging[i-1].OldestPending) {
				t.Fatalf("Lagging is not sorted oldest first: %+v", st.Lagging)
			}
		}
		if lagging != st.Pending {
			t.Fatalf("Lagging counts %d pending records; Stats.Pending is %d (fewer than 10 lanes have records)", lagging, st.Pending)
		}
		if st.Replayed != 0 {
			t.Fatalf("Stats.Replayed = %d before any replay", st.Replayed)
		}
		// A replayed dead letter keeps its error but has no attempt: it is
		// pending and replayed, not retrying.
		dls, ok := ob.Store.(outbox.DeadLetterStore)
		if !ok {
			return
		}
		if n, err := dls.ReplayDead(ctx, outbox.SelectDead{All: true}); err != nil || n != 1 {
			t.Fatalf("ReplayDead = %d, %v; want 1", n, err)
		}
		if st, err = sr.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		if st.Pending != 7 || st.Dead != 0 || st.Retrying != 1 || st.Replayed != 1 {
			t.Fatalf("after a replay Stats = pending %d dead %d retrying %d replayed %d; want 7, 0, 1, 1", st.Pending, st.Dead, st.Retrying, st.Replayed)
		}
	}},
	{"StatsPerTopic", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		sr := needCapability[outbox.StatsReader](t, ob.Store, "StatsReader")
		if st, err := sr.Stats(ctx); err != nil || len(st.Topics) != 0 {
			t.Fatalf("Stats of an empty outbox lists topics %+v, %v", st.Topics, err)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		at := func(ago time.Duration) time.Time { return now.Add(-ago) }
		// Delivered records older than every pending one, in the topics
		// with a backlog and in a topic of their own: none may be counted,
		// nor be the oldest pending record of its topic.
		write(t, ctx, ob,
			outbox.Message{Topic: "a", Key: "a-delivered", CreatedAt: at(3 * time.Hour)},
			outbox.Message{Topic: "b", Key: "b-delivered", CreatedAt: at(3 * time.Hour)},
			outbox.Message{Topic: "delivered", Key: "d-1", CreatedAt: at(3 * time.Hour)},
			outbox.Message{Topic: "delivered", Key: "d-2"},
			// Topic a: three pending, one an hour younger than the oldest,
			// one retrying (still pending).
			outbox.Message{Topic: "a", Key: "a-1", CreatedAt: at(2 * time.Hour)},
			outbox.Message{Topic: "a", Key: "a-2", CreatedAt: at(time.Hour)},
			outbox.Message{Topic: "a", Key: "a-retry"},
			// Topic b: one pending, one dead letter older than it.
			outbox.Message{Topic: "b", Key: "b-1", CreatedAt: at(time.Hour)},
			outbox.Message{Topic: "b", Key: "b-dead", CreatedAt: at(4 * time.Hour)},
			// Topics c and e: dead letters only, two and one.
			outbox.Message{Topic: "c", Key: "c-dead-1"},
			outbox.Message{Topic: "c", Key: "c-dead-2"},
			outbox.Message{Topic: "e", Key: "e-dead"},
		)
		a := hold(t, ctx, ob.Store, "a", hour)
		for _, r := range a.read(20) {
			switch {
			case strings.HasSuffix(r.Key, "-delivered") || r.Topic == "delivered":
				a.deliver(r)
			case strings.Contains(r.Key, "-dead"):
				a.dead("x", r)
			case r.Key == "a-retry":
				a.retry("x", hour, r)
			}
		}
		st, err := sr.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []outbox.TopicStats{
			{Topic: "a", Pending: 3, OldestPending: at(2 * time.Hour)},
			{Topic: "b", Pending: 1, Dead: 1, OldestPending: at(time.Hour)},
			{Topic: "c", Dead: 2},
			{Topic: "e", Dead: 1},
		}
		if !sameTopicStats(st.Topics, want) {
			t.Fatalf("Stats.Topics = %+v\nwant %+v (pending topics oldest first, then most dead letters first; no delivered record counted)", st.Topics, want)
		}

		// More topics than the cap, each with one record pending and
		// younger than a's and b's: the list keeps the oldest pending
		// topics and leaves out those with dead letters only, while the
		// totals still count every topic.
		var more []outbox.Message
		for i := range outbox.MaxStatsTopics {
			more = append(more, outbox.Message{Topic: fmt.Sprintf("m%03d", i), Key: fmt.Sprintf("m-%d", i), CreatedAt: at(time.Duration(outbox.MaxStatsTopics-i) * time.Second)})
		}
		write(t, ctx, ob, more...)
		if st, err = sr.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		if len(st.Topics) != outbox.MaxStatsTopics || st.Topics[0].Topic != "a" || st.Topics[1].Topic != "b" ||
			st.Topics[2].Topic != "m000" || st.Topics[len(st.Topics)-1].Topic != fmt.Sprintf("m%03d", outbox.MaxStatsTopics-3) {
			t.Fatalf("with %d topics, Stats.Topics = %+v; want %d of them: a, b, then m000 onwards", outbox.MaxStatsTopics+4, st.Topics, outbox.MaxStatsTopics)
		}
		if st.Pending != 4+int64(outbox.MaxStatsTopics) || st.Dead != 4 {
			t.Fatalf("with more topics than listed, Stats = pending %d dead %d; want %d, 4", st.Pending, st.Dead, 4+outbox.MaxStatsTopics)
		}
	}},
	{"ListenWakesOnCommit", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		l := needCapability[outbox.Listener](t, ob.Store, "Listener")
		ch, err := l.Listen(ctx)
		skipUnsupported(t, err)
		if err != nil {
			t.Fatal(err)
		}
		// A notification may arrive before the listener is ready to hear it;
		// keep writing until one arrives. The relay polls for the same reason.
		for {
			write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
			select {
			case _, ok := <-ch:
				if !ok {
					t.Fatal("the listener channel closed while the context is live")
				}
				return
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal("no notification after commits")
			}
		}
	}},
	{"ListenStopsWithContext", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		l := needCapability[outbox.Listener](t, ob.Store, "Listener")
		lctx, cancel := context.WithCancel(ctx)
		ch, err := l.Listen(lctx)
		skipUnsupported(t, err)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-ctx.Done():
				t.Fatal("the listener channel stayed open after its context ended")
			}
		}
	}},
	{"MigrateIsIdempotentAndConcurrent", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		m := needCapability[outbox.Migrator](t, ob.Store, "Migrator")
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if err := m.Migrate(ctx); err != nil {
					t.Errorf("Migrate: %v", err)
				}
			})
		}
		wg.Wait()
		write(t, ctx, ob, outbox.Message{Topic: "t"})
		if got := drain(t, ctx, ob.Store, "a"); len(got) != 1 {
			t.Fatalf("after repeated migrations drained %d records, want 1", len(got))
		}
	}},
	{"Ping", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		p := needCapability[outbox.Pinger](t, ob.Store, "Pinger")
		if err := p.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}},
}

// needCapability returns v as a T or skips t naming the missing capability.
func needCapability[T any](t *testing.T, v any, name string) T {
	t.Helper()
	c, ok := v.(T)
	if !ok {
		t.Skipf("the store is not an outbox.%s", name)
	}
	return c
}

func sum(ns []int) int {
	s := 0
	for _, n := range ns {
		s += n
	}
	return s
}

// skipUnsupported skips t when a capability says this deployment lacks it.
func skipUnsupported(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, outbox.ErrUnsupported) {
		t.Skipf("the deployment does not support it: %v", err)
	}
}

// sameTopicStats tells whether got lists the topics of want in its order
// with its counts, each oldest pending record within a millisecond (the
// precision of the stores' clocks).
func sameTopicStats(got, want []outbox.TopicStats) bool {
	return slices.EqualFunc(got, want, func(g, w outbox.TopicStats) bool {
		return g.Topic == w.Topic && g.Pending == w.Pending && g.Dead == w.Dead &&
			g.OldestPending.IsZero() == w.OldestPending.IsZero() && g.OldestPending.Sub(w.OldestPending).Abs() <= time.Millisecond
	})
}
