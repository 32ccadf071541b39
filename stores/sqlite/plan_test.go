package sqlitestore_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// The claim must stay cheap however many delivered records are kept: it
// walks the partial index of undelivered records from the oldest and reads
// the blocked keys from the small index of records relays touched. This
// checks the plan's shape, not its speed.
func TestClaimPlanUsesPartialIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{})

	// Some history: delivered records stay in the table.
	ob := outboxOf(db, store)
	var msgs []outbox.Message
	for i := range 300 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: fmt.Sprint("k", i%7)})
	}
	tx, err := ob.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		recs, err := store.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 100, Lease: hour})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		if err := store.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "a", IDs: ids(recs)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil { // plans must not depend on missing statistics either
		t.Fatal(err)
	}

	plan := explain(t, db, store.ClaimSQL(), 0, false, 100, "owner", 1)
	t.Logf("EXPLAIN QUERY PLAN of the claim:\n%s", plan)
	for _, want := range []string{
		"SCAN o USING COVERING INDEX outbox_pending",
		"SEARCH e USING COVERING INDEX outbox_touched (key=? AND seq>? AND seq<?)",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("the claim plan lacks %q", want)
		}
	}
	for _, bad := range []string{"USE TEMP B-TREE FOR ORDER BY", "SCAN outbox\n", "SCAN o\n"} {
		if strings.Contains(plan+"\n", bad) {
			t.Errorf("the claim plan has %q: it would sort or read the whole table", strings.TrimSpace(bad))
		}
	}
}

// explain returns the EXPLAIN QUERY PLAN of query, one step a line,
// indented by depth.
func explain(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	depth := map[int]int{0: -1}
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		depth[id] = depth[parent] + 1
		fmt.Fprintf(&b, "%s%s\n", strings.Repeat("  ", depth[id]), detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(b.String(), "\n")
}

// hour is a lease that outlives any test.
const hour = time.Hour

func ids(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}
