package sqlitestore_test

import (
	"path/filepath"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// A Seq is a rowid here, and SQLite gives the next record the largest
// rowid plus one: when the record with the largest Seq is deleted (Settle
// deletes what it delivers), the next record written takes its Seq. The
// relay still lists a record it settled in the read that began before the
// settle (and a relay that lost a lane lists its records until it notices),
// so SkipSeqs can name a Seq that now belongs to a record nobody holds.
// Leaving that record out while returning the next record of its key is a
// per-key order break: the relay queues the later record first, and the
// next read finds the earlier one behind it. Read must leave out exactly
// what SkipIDs leaves out.
func TestAttackSkipSeqsReusedRowid(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{Lanes: 4})
	enqueue(t, ctx, db, store, outbox.Message{Topic: "t", Key: "x"})
	lanes := takeAll(t, ctx, store, "a", hour)
	recs := readLanes(t, ctx, store, lanes, 10)
	if len(recs) != 1 {
		t.Fatalf("read %d records; want 1", len(recs))
	}
	x := recs[0]
	// The relay holds x and starts a read that leaves it out; meanwhile
	// x is delivered (deleted) and a writer commits y then z, of one key.
	skipIDs, skipSeqs := []string{x.ID}, outbox.SeqRanges([]int64{x.Seq})
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{x.ID}}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, ctx, db, store, outbox.Message{Topic: "t", Key: "k", Payload: []byte("y")},
		outbox.Message{Topic: "t", Key: "k", Payload: []byte("z")})
	all := readLanes(t, ctx, store, lanes, 10)
	if len(all) != 2 {
		t.Fatalf("read %d records; want y and z", len(all))
	}
	t.Logf("x had Seq %d; y has %d, z %d", x.Seq, all[0].Seq, all[1].Seq)
	byID, err := store.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: 10, SkipIDs: skipIDs})
	if err != nil {
		t.Fatal(err)
	}
	bySeq, err := store.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: 10, SkipIDs: skipIDs, SkipSeqs: skipSeqs})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(bySeq), ids(byID); len(got) != len(want) || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Read leaving out the settled x: by Seq %v, by ID %v; want y and z (%v) both ways", got, want, ids(all))
	}
}
