package mysqlstore

import (
	"context"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// TestClaimLooksPastBlockedKeys puts a long backlog of one key, blocked
// behind a retry, in front of other keys: the claim window holds only that
// key, and the claim must find the others past it, keep each key's order,
// hold back a key behind its dead letter in strict order, and, once nothing
// is claimable, say so without reading the backlog.
func TestClaimLooksPastBlockedKeys(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	db.SetMaxOpenConns(1) // the store and the read counters share one session
	s := newStore(t, db, Config{})

	const backlog = 50_000
	fillPending(t, ctx, db, s, backlog, 1) // all of key "key-0"
	head := claimOK(t, ctx, s, "a", 1, time.Hour)
	if len(head) != 1 || head[0].Key != "key-0" {
		t.Fatalf("claimed %+v, want the backlog's first record", head)
	}
	if err := s.ScheduleRetry(ctx, outbox.ScheduleRetryParams{Owner: "a", Retries: []outbox.Retry{{ID: head[0].ID, Error: "later", Delay: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	b := enqueue(t, ctx, db, s, keyed("t", "b", 5)...)
	u := enqueue(t, ctx, db, s, keyed("t", "", 3)...)
	c := enqueue(t, ctx, db, s, keyed("t", "c", 5)...)
	d := enqueue(t, ctx, db, s, keyed("t", "d", 2)...)
	if _, err := db.ExecContext(ctx, "UPDATE "+s.table+" SET state = 1, dead_at = UTC_TIMESTAMP(6) WHERE id = ?", d[0].ID); err != nil {
		t.Fatal(err)
	}

	var want []string
	for _, m := range append(append(append([]outbox.Message{}, b...), u...), c[:2]...) {
		want = append(want, m.ID)
	}
	got := claimOK(t, ctx, s, "b", 10, time.Hour)
	if !equalIDs(recordIDs(got), want) {
		t.Fatalf("claimed %v past the blocked backlog, want %v: the records of b, those without key, then c's first two", recordIDs(got), want)
	}

	if err := s.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "b", IDs: recordIDs(got)}); err != nil {
		t.Fatal(err)
	}
	strict, err := s.Claim(ctx, outbox.ClaimParams{Owner: "c", Limit: 10, Lease: time.Hour, StrictOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := recordIDs(msgRecords(c[2:])); !equalIDs(recordIDs(strict), want) {
		t.Fatalf("in strict order claimed %v, want c's last three %v and nothing of d behind its dead letter", recordIDs(strict), want)
	}
	loose := claimOK(t, ctx, s, "d", 10, time.Hour)
	if len(loose) != 1 || loose[0].ID != d[1].ID {
		t.Fatalf("claimed %v, want d's second record (by default a key continues past its dead letter)", recordIDs(loose))
	}

	before := handlerReads(t, ctx, db)
	none := claimOK(t, ctx, s, "e", 10, time.Hour)
	read := handlerReads(t, ctx, db) - before - statusOverhead(t, ctx, db)
	t.Logf("a claim that found nothing read %d rows of a %d-record backlog", read, backlog)
	if len(none) != 0 {
		t.Fatalf("claimed %v; every key is blocked or leased", recordIDs(none))
	}
	if limit := 8 * s.window(10); read > int64(limit) {
		t.Errorf("a claim that found nothing read %d rows; want at most %d, not the backlog of %d", read, limit, backlog)
	}
}

func msgRecords(msgs []outbox.Message) []outbox.Record {
	recs := make([]outbox.Record, len(msgs))
	for i, m := range msgs {
		recs[i].ID = m.ID
	}
	return recs
}

func equalIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
