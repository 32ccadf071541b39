package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// skipSeqsCase draws a random Read of pending (all pending records, in Seq
// order, dead letters excluded): a held set (runs, scattered, mixed, or
// more than 64 long runs), lanes, AfterSeq (often at or in a held run),
// skipped keys, a limit and strict order. It returns the read by ID and
// the same with SkipSeqs.
func skipSeqsCase(rng *rand.Rand, pending []outbox.Record, laneTotal int) (byID, bySeq outbox.ReadParams, desc string) {
	var held []outbox.Record
	mode := rng.IntN(5)
	for i := 0; i < len(pending); {
		switch mode {
		case 0: // long runs, short gaps
			n := 1 + rng.IntN(40)
			held = append(held, pending[i:min(len(pending), i+n)]...)
			i += n + 1 + rng.IntN(3)
		case 1: // scattered
			if rng.IntN(3) == 0 {
				held = append(held, pending[i])
			}
			i++
		case 2: // mixed
			if rng.IntN(2) == 0 {
				n := 8 + rng.IntN(30)
				held = append(held, pending[i:min(len(pending), i+n)]...)
				i += n
			} else if rng.IntN(2) == 0 {
				held = append(held, pending[i])
				i++
			}
			i += rng.IntN(4)
		case 3: // many runs just long enough, one-record gaps: > 64 runs
			n := 7 + rng.IntN(3)
			held = append(held, pending[i:min(len(pending), i+n)]...)
			i += n + 1
		case 4: // the head held whole, then a few
			if i < len(pending)/2 {
				held = append(held, pending[i])
			} else if rng.IntN(10) == 0 {
				held = append(held, pending[i])
			}
			i++
		}
	}
	if rng.IntN(4) == 0 && len(held) > 0 { // forget some: holes in the runs
		held = slices.DeleteFunc(held, func(outbox.Record) bool { return rng.IntN(20) == 0 })
	}
	var lanes []int
	if rng.IntN(2) == 0 {
		for l := range laneTotal {
			lanes = append(lanes, l)
		}
	} else {
		for l := range laneTotal {
			if rng.IntN(3) == 0 {
				lanes = append(lanes, l)
			}
		}
		if len(lanes) == 0 {
			lanes = []int{rng.IntN(laneTotal)}
		}
	}
	var after int64
	if len(held) > 0 {
		h := held[rng.IntN(len(held))].Seq
		switch rng.IntN(6) {
		case 0:
			after = h
		case 1:
			after = h - 1
		case 2:
			after = h + 1
		case 3:
			after = pending[rng.IntN(len(pending))].Seq
		}
	}
	var keys []string
	if rng.IntN(3) == 0 {
		for range 1 + rng.IntN(3) {
			keys = append(keys, pending[rng.IntN(len(pending))].Key)
		}
	}
	limit := 1 + rng.IntN(60)
	if rng.IntN(4) == 0 {
		limit = 1 + rng.IntN(1500)
	}
	ids := make([]string, len(held))
	seqs := make([]int64, len(held))
	for i, r := range held {
		ids[i], seqs[i] = r.ID, r.Seq
	}
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	byID = outbox.ReadParams{Lanes: lanes, AfterSeq: after, Limit: limit, SkipIDs: ids, SkipKeys: keys, StrictOrder: rng.IntN(2) == 0}
	bySeq = byID
	bySeq.SkipSeqs = outbox.SeqRanges(seqs)
	runs, _ := outbox.LongRuns(bySeq.SkipSeqs, 8, 1<<30)
	desc = fmt.Sprintf("mode %d: %d held in %d ranges (%d long), %d lanes, after %d, %d skipped keys, limit %d, strict %v",
		mode, len(held), len(bySeq.SkipSeqs), len(runs), len(lanes), after, len(keys), limit, byID.StrictOrder)
	return byID, bySeq, desc
}

// checkSkipSeqs compares the two reads: the same records, in ascending Seq
// order, above AfterSeq, none of them held.
func checkSkipSeqs(t *testing.T, desc string, byID, bySeq outbox.ReadParams, want, got []outbox.Record) {
	t.Helper()
	held := make(map[string]bool, len(byID.SkipIDs))
	for _, id := range byID.SkipIDs {
		held[id] = true
	}
	for i, r := range got {
		if held[r.ID] {
			t.Fatalf("%s: by Seq returned %s (Seq %d), which is held", desc, r.ID, r.Seq)
		}
		if r.Seq <= bySeq.AfterSeq || i > 0 && r.Seq <= got[i-1].Seq {
			t.Fatalf("%s: by Seq returned Seq %d at %d, not ascending above %d", desc, r.Seq, i, bySeq.AfterSeq)
		}
	}
	if len(want) != len(got) {
		t.Fatalf("%s: by Seq returned %d records, by ID %d", desc, len(got), len(want))
	}
	for i := range want {
		if want[i].ID != got[i].ID {
			t.Fatalf("%s: record %d is Seq %d by Seq, Seq %d by ID", desc, i, got[i].Seq, want[i].Seq)
		}
	}
}

// pendingRecords lists the pending records of s in Seq order.
func pendingRecords(t *testing.T, ctx context.Context, s *Store, lanes []int) []outbox.Record {
	t.Helper()
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Read with SkipSeqs returns what Read with SkipIDs returns for the same
// held records, over random held sets, lanes, cursors, skipped keys,
// limits and strict order (with dead letters), with the table's statistics
// stale and then fresh.
func TestAttackSkipSeqsEquivalence(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	analyze(t, ctx, pool, s) // statistics of the empty table: stale from here
	fill(t, ctx, pool, s, 2000, 40, 8, false)
	fill(t, ctx, pool, s, 600, 0, 8, false) // keyless records between keyed ones
	fill(t, ctx, pool, s, 1500, 60, 8, false)
	if _, err := pool.Exec(ctx, "UPDATE "+s.Table()+" SET dead_at = now() WHERE seq % 53 = 7"); err != nil {
		t.Fatal(err)
	}
	lanes := allLanes(t, ctx, s)
	pending := pendingRecords(t, ctx, s, lanes)
	rng := rand.New(rand.NewPCG(1, uint64(len(pending))))
	run := func(n int, stats string) {
		for i := range n {
			byID, bySeq, desc := skipSeqsCase(rng, pending, len(lanes))
			desc = fmt.Sprintf("%s, case %d: %s", stats, i, desc)
			want, err := s.Read(ctx, byID)
			if err != nil {
				t.Fatalf("%s: by ID: %v", desc, err)
			}
			got, err := s.Read(ctx, bySeq)
			if err != nil {
				t.Fatalf("%s: by Seq: %v", desc, err)
			}
			checkSkipSeqs(t, desc, byID, bySeq, want, got)
		}
	}
	run(150, "stale statistics")
	analyze(t, ctx, pool, s)
	run(150, "fresh statistics")
}

// The records that a transaction wrote with Seqs below a held run, and
// committed after the relay read that run, are found by the next read by
// Seq, before the later records of their key: the gap in the held Seqs is a
// range the read walks.
func TestAttackSkipSeqsLateCommitInsideRuns(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 1})
	lanes := allLanes(t, ctx, s)
	enqueue := func(p *pgxpool.Pool, key string, n int) {
		t.Helper()
		msgs := make([]outbox.Message, n)
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "t", Key: key}
		}
		if err := enqueueCommitted(ctx, p, s, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(pool, "a", 20) // a run the relay will hold
	// A transaction takes Seqs now and commits late.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	late := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}}
	if err := s.Enqueue(ctx, tx, late...); err != nil {
		t.Fatal(err)
	}
	enqueue(pool, "b", 30) // another run above the late records
	held := pendingRecords(t, ctx, s, lanes)
	if len(held) != 50 {
		t.Fatalf("read %d records to hold; want 50", len(held))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(pool, "k", 3) // the key's next records, after the late ones
	ids, seqs := make([]string, len(held)), make([]int64, len(held))
	for i, r := range held {
		ids[i], seqs[i] = r.ID, r.Seq
	}
	p := outbox.ReadParams{Lanes: lanes, Limit: 2, SkipIDs: ids, SkipSeqs: outbox.SeqRanges(seqs)}
	if len(p.SkipSeqs) != 2 {
		t.Fatalf("held Seqs %v; want two runs around the late ones", p.SkipSeqs)
	}
	got, err := s.Read(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != late[0].ID || got[1].ID != late[1].ID {
		t.Fatalf("next read by Seq (limit 2) = %v; want the late records %s, %s", ids2(got), late[0].ID, late[1].ID)
	}
}

func ids2(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = fmt.Sprintf("%s@%d", r.ID, r.Seq)
	}
	return out
}
