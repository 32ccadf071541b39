package mysqlstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// The draw and the check are pgstore's (attack_skipseqs_test.go there).

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

// Read with SkipSeqs returns what Read with SkipIDs returns for the same
// held records, over random held sets (scattered ones past 1,000 single
// Seqs, which MariaDB reads with in_predicate_conversion_threshold off;
// more than 64 long runs), lanes, cursors, skipped keys, limits and strict
// order (with dead letters), with the statistics stale and then fresh.
func TestAttackSkipSeqsEquivalence(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{})
	analyze(t, ctx, db, s)
	fillPending(t, ctx, db, s, 2000, 40)
	keyless := make([]outbox.Message, 400)
	for i := range keyless {
		keyless[i] = outbox.Message{Topic: "t"}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, tx, keyless...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	fillPending(t, ctx, db, s, 1500, 7)
	if _, err := db.ExecContext(ctx, "UPDATE "+s.table+" SET dead_at = UTC_TIMESTAMP(6) WHERE seq % 53 = 7"); err != nil {
		t.Fatal(err)
	}
	total, err := s.laneTotal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lanes := make([]int, total)
	for i := range lanes {
		lanes[i] = i
	}
	pending, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, uint64(len(pending))))
	singles := 0
	run := func(n int, stats string) {
		for i := range n {
			byID, bySeq, desc := skipSeqsCase(rng, pending, total)
			desc = fmt.Sprintf("%s, case %d: %s", stats, i, desc)
			if _, n := skipSeqs(bySeq.SkipSeqs); n >= 1000 {
				singles++
			}
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
	run(120, "stale statistics")
	analyze(t, ctx, db, s)
	run(120, "fresh statistics")
	if singles == 0 {
		t.Errorf("no case skipped 1,000 single Seqs or more")
	}
	t.Logf("%d cases with 1,000 single Seqs or more", singles)
}
