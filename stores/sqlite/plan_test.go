package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

// TestReadPlanUnderStaleStatistics: Read's plan must not depend on the
// table statistics. The statistics are gathered on the empty table
// (ANALYZE), then a backlog of 100,000 records over 1,000 keys is written
// without gathering them again; Read, for all lanes and for a quarter of
// them, with and without StrictOrder, with the 3,000 records at the head
// skipped by ID (as the relay skips those it holds), must walk the pending
// index in Seq order from the cursor: no sort of the backlog, no scan of
// the table, and no subquery run again per row but the dead-letter probe
// of StrictOrder.
func TestReadPlanUnderStaleStatistics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store, err := New(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}

	const backlog, keys = 100_000, 1000
	payload := []byte(`{"user_id":"user-42","name":"Ada Lovelace"}`)
	for written := 0; written < backlog; {
		msgs := make([]outbox.Message, min(rowsPerInsert, backlog-written))
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "t", Key: fmt.Sprint("user-", (written+i)%keys), Payload: payload}
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Enqueue(ctx, tx, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		written += len(msgs)
	}

	var head []string
	var headSeqs []int64
	rows, err := db.QueryContext(ctx, "SELECT id, seq FROM "+store.Table()+" ORDER BY seq LIMIT 3000")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		head = append(head, id)
		headSeqs = append(headSeqs, seq)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	skipIDs, _ := toJSON(head)
	skipSeqs, _ := toJSON(headSeqs)

	all := make([]int, outbox.DefaultLanes)
	for i := range all {
		all[i] = i
	}
	quarter := all[:outbox.DefaultLanes/4]
	for _, c := range []struct {
		name   string
		lanes  []int
		strict bool
	}{
		{"all lanes", all, false},
		{"a quarter of the lanes", quarter, false},
		{"all lanes, strict order", all, true},
		{"a quarter of the lanes, strict order", quarter, true},
	} {
		query := store.q.read
		if c.strict {
			query = store.q.readStrict
		}
		lanes, _ := toJSON(c.lanes)
		plan := explain(t, db, query, lanes, 0, `["user-1"]`, 500, skipIDs, skipSeqs)
		t.Logf("%s: EXPLAIN QUERY PLAN of Read:\n%s", c.name, plan)
		if !strings.Contains(plan, "SEARCH o USING INDEX outbox_pending (seq>?)") {
			t.Errorf("%s: the plan does not walk the pending index from the cursor", c.name)
		}
		for _, line := range strings.Split(plan, "\n") {
			line = strings.TrimSpace(line)
			switch {
			case strings.Contains(line, "TEMP B-TREE"):
				t.Errorf("%s: the plan sorts: %q", c.name, line)
			case strings.HasPrefix(line, "SCAN") && !strings.HasPrefix(line, "SCAN json_each VIRTUAL TABLE"):
				t.Errorf("%s: the plan scans a table: %q", c.name, line)
			case strings.HasPrefix(line, "CORRELATED") && !c.strict:
				t.Errorf("%s: the plan runs a subquery for every row: %q", c.name, line)
			}
		}
		if n := strings.Count(plan, "LIST SUBQUERY"); n != 4 {
			t.Errorf("%s: the plan reads %d lists once, want 4 (lanes, skipped IDs and Seqs, skipped keys)", c.name, n)
		}
		if c.strict && !strings.Contains(plan, "SEARCH d USING INDEX outbox_dead_key (key=? AND seq<?)") {
			t.Errorf("%s: the plan does not probe the dead letters of the key in their index", c.name)
		}

		// Held records left out by ID (what other callers give) and by
		// Seq (the relay gives both).
		for _, seqs := range [][]outbox.SeqRange{nil, outbox.SeqRanges(slices.Clone(headSeqs))} {
			recs, err := store.Read(ctx, outbox.ReadParams{Lanes: c.lanes, Limit: 500, SkipKeys: []string{"user-1"}, SkipIDs: head, SkipSeqs: seqs, StrictOrder: c.strict})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 500 {
				t.Fatalf("%s: Read returned %d records of a backlog of %d, want a full batch of 500", c.name, len(recs), backlog)
			}
			for i, r := range recs {
				if (i > 0 && r.Seq <= recs[i-1].Seq) || !slices.Contains(c.lanes, r.Lane) || r.Key == "user-1" || slices.Contains(head, r.ID) {
					t.Fatalf("%s: record %d (seq %d, lane %d, key %s) is out of order, of another lane, of a skipped key or skipped", c.name, i, r.Seq, r.Lane, r.Key)
				}
			}
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

// TestSettlePlan: the statements that settle deliveries (the DELETE, and
// the UPDATE of Retain) find their records by ID in the id index and read
// the lane list once: no scan of the outbox.
func TestSettlePlan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store, err := New(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ids, _ := toJSON([]string{outbox.NewID(), outbox.NewID()})
	lanes, _ := lanePairs([]outbox.Lane{{ID: 0, Epoch: 1}, {ID: 1, Epoch: 1}})
	for _, c := range []struct {
		name  string
		query string
		args  []any
	}{
		{"delete (no Retain)", store.q.deliver, []any{ids, lanes}},
		{"mark delivered (Retain)", store.q.delivered, []any{int64(1), ids, lanes}},
	} {
		plan := explain(t, db, c.query, c.args...)
		t.Logf("%s: EXPLAIN QUERY PLAN of Settle:\n%s", c.name, plan)
		if !strings.Contains(plan, "SEARCH o USING INDEX outbox_id (id=?)") {
			t.Errorf("%s: the plan does not find the records by ID", c.name)
		}
		for _, line := range strings.Split(plan, "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "SCAN") && !strings.HasPrefix(line, "SCAN json_each VIRTUAL TABLE") && !strings.HasPrefix(line, "SCAN h VIRTUAL TABLE") {
				t.Errorf("%s: the plan scans a table: %q", c.name, line)
			}
		}
	}
}
