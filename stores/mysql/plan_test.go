package mysqlstore

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// retainedForPlanTest is how many delivered records the plan tests keep: far
// more than any operation may read.
const retainedForPlanTest = 100_000

// TestRelayOperationsIgnoreDeliveredRecords counts the rows each relay-side
// operation reads (the session's Handler_read_* counters) in an outbox
// that retains many delivered records: claims, settles, stats, dead letters
// and an empty cleanup must read about what they return, not the table.
func TestRelayOperationsIgnoreDeliveredRecords(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	db.SetMaxOpenConns(1) // the store and the counters share one session
	s := newStore(t, db, Config{})
	fillDelivered(t, ctx, db, s, retainedForPlanTest, 1000)

	// A realistic live part: a key blocked behind a waiting retry, a
	// leased batch, a dead letter, and pending records of many keys.
	var msgs []outbox.Message
	for i := range 60 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: "key-" + string(rune('a'+i%20))})
	}
	enqueue(t, ctx, db, s, msgs...)
	first := claimOK(t, ctx, s, "a", 5, time.Hour)
	if err := s.ScheduleRetry(ctx, outbox.ScheduleRetryParams{Owner: "a", Retries: []outbox.Retry{{ID: first[0].ID, Error: "x", Delay: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, outbox.DeadLetterParams{Owner: "a", Letters: []outbox.Failure{{ID: first[1].ID, Error: "x"}}}); err != nil {
		t.Fatal(err)
	}

	const budget = 1000 // rows an operation may read here; the table has 100,060
	var claimed []outbox.Record
	ops := []struct {
		name string
		run  func() error
	}{
		{"Claim", func() (err error) {
			claimed, err = s.Claim(ctx, outbox.ClaimParams{Owner: "b", Limit: 20, Lease: time.Hour})
			return err
		}},
		{"Claim strict", func() error {
			_, err := s.Claim(ctx, outbox.ClaimParams{Owner: "c", Limit: 20, Lease: time.Hour, StrictOrder: true})
			return err
		}},
		{"MarkDelivered", func() error {
			return s.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "b", IDs: recordIDs(claimed)})
		}},
		{"Release", func() error {
			return s.Release(ctx, outbox.ReleaseParams{Owner: "a", IDs: recordIDs(first[2:])})
		}},
		{"Stats", func() error { _, err := s.Stats(ctx); return err }},
		{"ListDead", func() error { _, err := s.ListDead(ctx, outbox.ListDeadParams{}); return err }},
		{"Cleanup (nothing old enough)", func() error {
			_, err := s.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Hour, Limit: 1000})
			return err
		}},
	}
	for _, op := range ops {
		before := handlerReads(t, ctx, db)
		if err := op.run(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		read := handlerReads(t, ctx, db) - before - statusOverhead(t, ctx, db)
		t.Logf("%s read %d rows", op.name, read)
		if read > budget {
			t.Errorf("%s read %d rows of an outbox with %d delivered records; want at most %d", op.name, read, retainedForPlanTest, budget)
		}
	}
	if len(claimed) != 20 {
		t.Errorf("claimed %d records, want 20", len(claimed))
	}
}

// TestClaimPlan checks the shape of the claim's plans: the window walks
// claim_order, the blockers come from the blocked index, the first record
// of each key from a loose index scan of key_order, and no step scans the
// outbox.
func TestClaimPlan(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{})
	fillDelivered(t, ctx, db, s, retainedForPlanTest, 1000)
	fillPending(t, ctx, db, s, 20_000, 100)

	for _, strict := range []bool{false, true} {
		now := time.Now()
		for _, q := range []struct {
			name, query string
			want        map[string]string // table alias -> index
			groupBy     string            // alias that must use a loose index scan
		}{
			{"window", s.claimWindow(now, 500, strict), map[string]string{"o": "claim_order", "k": "blocked", "c": "PRIMARY"}, ""},
			{"heads", s.claimHeads(now, 1000, 500, strict), map[string]string{s.cfg.Table: "key_order", "k": "blocked"}, s.cfg.Table},
		} {
			plan := explain(t, ctx, db, "EXPLAIN "+q.query)
			var text strings.Builder
			for _, row := range plan {
				text.WriteString("\n  " + strings.Join([]string{row["id"], row["select_type"], row["table"], row["type"], row["key"], row["rows"], row["Extra"]}, " | "))
			}
			t.Logf("%s, strict=%v:%s", q.name, strict, text.String())
			used := make(map[string]string)
			for _, row := range plan {
				table := row["table"]
				if strings.HasPrefix(table, "<") {
					continue // derived tables and unions
				}
				if row["type"] == "ALL" || row["key"] == "" {
					t.Errorf("%s, strict=%v: %s is read without an index", q.name, strict, table)
				}
				used[table] = row["key"]
				if table == q.groupBy && !strings.Contains(row["Extra"], "Using index for group-by") {
					t.Errorf("%s, strict=%v: %s is not read with a loose index scan", q.name, strict, table)
				}
			}
			for alias, key := range q.want {
				if used[alias] != key {
					t.Errorf("%s, strict=%v: %s uses index %q, want %q", q.name, strict, alias, used[alias], key)
				}
			}
		}
	}
}

// explain runs an EXPLAIN and returns its rows by column name; MySQL and
// MariaDB have different columns but share these.
func explain(t *testing.T, ctx context.Context, db *sql.DB, query string) []map[string]string {
	t.Helper()
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make(map[string]string)
		for i, c := range cols {
			row[c] = vals[i].String
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// handlerReads is the session's count of rows read by the storage engine.
func handlerReads(t *testing.T, ctx context.Context, db *sql.DB) int64 {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SHOW SESSION STATUS LIKE 'Handler_read%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// statusOverhead is what reading the counters adds to them.
func statusOverhead(t *testing.T, ctx context.Context, db *sql.DB) int64 {
	a := handlerReads(t, ctx, db)
	return handlerReads(t, ctx, db) - a
}

func enqueue(t testing.TB, ctx context.Context, db *sql.DB, s *Store, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.Enqueue(ctx, tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func claimOK(t testing.TB, ctx context.Context, s *Store, owner string, limit int, lease time.Duration) []outbox.Record {
	t.Helper()
	recs, err := s.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: limit, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func recordIDs(recs []outbox.Record) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}
