package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
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
// that retains many delivered records: lane leases, reads, settles, stats,
// dead letters and an empty cleanup must read about what they return (and
// the lane rows), not the table.
func TestRelayOperationsIgnoreDeliveredRecords(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	db.SetMaxOpenConns(1) // the store and the counters share one session
	s := newStore(t, db, Config{})
	fillDelivered(t, ctx, db, s, retainedForPlanTest, 1000)

	// A realistic live part: a retry, a dead letter, and pending records
	// of many keys.
	var msgs []outbox.Message
	for i := range 60 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: "key-" + string(rune('a'+i%20))})
	}
	enqueue(t, ctx, db, s, msgs...)
	lanes := holdAll(t, ctx, s, "a")
	first := readOK(t, ctx, s, lanes, 5)
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes,
		Retries: []outbox.Retry{{ID: first[0].ID, Error: "x", Delay: time.Hour}},
		Dead:    []outbox.Failure{{ID: first[1].ID, Error: "x"}}}); err != nil {
		t.Fatal(err)
	}

	const budget = 1000 // rows an operation may read here; the table has 100,060
	var read []outbox.Record
	ops := []struct {
		name string
		run  func() error
	}{
		{"SyncLanes", func() error {
			_, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Hour, Held: lanes})
			return err
		}},
		{"ReleaseLanes + TakeLanes", func() error {
			if err := s.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "a", Lanes: lanes}); err != nil {
				return err
			}
			var err error
			lanes, err = s.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Hour, Lanes: bumped(lanes, 0), Charge: 100})
			return err
		}},
		{"Read 20", func() (err error) {
			read, err = s.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: 20})
			return err
		}},
		{"Read 20, strict", func() error {
			_, err := s.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: 20, StrictOrder: true})
			return err
		}},
		{"Settle 20 delivered", func() error {
			return s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: recordIDs(read)})
		}},
		{"Settle 2 retries, 1 dead", func() error {
			return s.Settle(ctx, outbox.SettleParams{Lanes: lanes,
				Retries: []outbox.Retry{{ID: first[2].ID, Error: "y"}, {ID: first[3].ID, Error: "y"}},
				Dead:    []outbox.Failure{{ID: first[4].ID, Error: "y"}}})
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
		n := handlerReads(t, ctx, db) - before - statusOverhead(t, ctx, db)
		t.Logf("%s read %d rows", op.name, n)
		if n > budget {
			t.Errorf("%s read %d rows of an outbox with %d delivered records; want at most %d", op.name, n, retainedForPlanTest, budget)
		}
	}
	if len(read) != 20 {
		t.Errorf("read %d records, want 20", len(read))
	}
}

// bumped returns lanes with their epochs moved by delta.
func bumped(lanes []outbox.Lane, delta int64) []outbox.Lane {
	out := make([]outbox.Lane, len(lanes))
	for i, l := range lanes {
		out[i] = outbox.Lane{ID: l.ID, Epoch: l.Epoch + delta}
	}
	return out
}

// TestReadPlanWithStaleStatistics: the table is analyzed while empty (and
// InnoDB's automatic recalculation is off for it), then a backlog of
// 100,000 records over 1,000 keys arrives. The optimizer believes the
// table empty; Read must still be a range scan of state_order in seq order
// with the lane tested in the index, no sort, and in strict order one
// look-up per candidate in dead_keys; and it must return a full batch.
func TestReadPlanWithStaleStatistics(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{})
	if _, err := db.ExecContext(ctx, "ALTER TABLE "+s.table+" STATS_AUTO_RECALC = 0"); err != nil {
		t.Fatal(err)
	}
	analyze(t, ctx, db, s)
	fillPending(t, ctx, db, s, 100_000, 1000)
	// A few dead letters, so that strict order has something to look up.
	if _, err := db.ExecContext(ctx, "UPDATE "+s.table+" SET dead_at = UTC_TIMESTAMP(6) WHERE seq IN (5, 500, 5000)"); err != nil {
		t.Fatal(err)
	}

	all := make([]int, outbox.DefaultLanes)
	for i := range all {
		all[i] = i
	}
	quarter := all[:outbox.DefaultLanes/4]
	for _, tc := range []struct {
		name  string
		lanes []int
	}{{"all lanes", all}, {"a quarter of the lanes", quarter}} {
		// What a relay holds: the first 3,000 records of its lanes.
		held, err := s.Read(ctx, outbox.ReadParams{Lanes: tc.lanes, Limit: 3000})
		if err != nil || len(held) != 3000 {
			t.Fatalf("%s: read %d records to hold, want 3000: %v", tc.name, len(held), err)
		}
		// Held as the relay gives them (IDs and Seqs), as IDs alone (what
		// other callers give), and every other one of them by Seq (what a
		// relay holds when another relay's lanes lie between its records).
		var heldSeqs, everyOther []int64
		for i, r := range held {
			heldSeqs = append(heldSeqs, r.Seq)
			if i%2 == 0 {
				everyOther = append(everyOther, r.Seq)
			}
		}
		for _, skip := range []struct {
			name string
			ids  []string
			seqs []outbox.SeqRange
		}{
			{"nothing skipped", nil, nil},
			{"3,000 IDs skipped", recordIDs(held), nil},
			{"3,000 Seqs skipped", recordIDs(held), outbox.SeqRanges(heldSeqs)},
			{"1,500 scattered Seqs skipped", nil, outbox.SeqRanges(everyOther)},
		} {
			skipped := make(map[int64]bool)
			for _, r := range skip.seqs {
				for seq := r.From; seq <= r.To; seq++ {
					skipped[seq] = true
				}
			}
			if skip.seqs == nil {
				for _, r := range held[:len(skip.ids)] {
					skipped[r.Seq] = true
				}
			}
			for _, strict := range []bool{false, true} {
				p := outbox.ReadParams{Lanes: tc.lanes, Limit: 500, StrictOrder: strict, SkipKeys: []string{"key-1", "key-2"}, SkipIDs: skip.ids, SkipSeqs: skip.seqs}
				name := fmt.Sprintf("%s, strict=%v, %s", tc.name, strict, skip.name)
				query, args := s.readQuery(p)
				plan := explainJSON(t, ctx, db, query, args...)
				t.Logf("%s: EXPLAIN FORMAT=JSON\n%s", name, abridgeIDs(plan.text))
				checkReadPlan(t, plan, strict, len(skipped) > 0)
				if skip.seqs != nil && !strings.Contains(planOuter(plan).indexCondition, "seq") {
					t.Errorf("%s: the skipped Seqs are not tested in the index: %+v", name, planOuter(plan))
				}

				recs, err := s.Read(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != p.Limit {
					t.Errorf("%s: Read returned %d records, want a full batch of %d", name, len(recs), p.Limit)
				}
				for i, r := range recs {
					if !slices.Contains(tc.lanes, r.Lane) || r.Lane != outbox.LaneOf(r.Key, r.ID, outbox.DefaultLanes) ||
						r.Key == "key-1" || r.Key == "key-2" || (i > 0 && r.Seq <= recs[i-1].Seq) || skipped[r.Seq] {
						t.Fatalf("%s: record %d is %+v", name, i, r)
					}
				}
				if skip.name == "1,500 scattered Seqs skipped" && !strict {
					// Every other held record is read: the ones not skipped.
					var want []int64
					for i := 1; i < len(held) && len(want) < 10; i += 2 {
						if k := held[i].Key; k != "key-1" && k != "key-2" {
							want = append(want, held[i].Seq)
						}
					}
					var got []int64
					for _, r := range recs[:len(want)] {
						got = append(got, r.Seq)
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s: read Seqs %v first, want %v (the held records not skipped)", name, got, want)
					}
				}
			}
		}
	}
}

// planOuter returns the outbox's table of a Read plan.
func planOuter(p plan) planTable {
	for _, pt := range p.tables {
		if pt.name == "o" {
			return pt
		}
	}
	return planTable{}
}

// abridgeIDs shortens the lists of quoted IDs in an EXPLAIN output to
// their first two.
func abridgeIDs(text string) string {
	return quotedIDs.ReplaceAllStringFunc(text, func(list string) string {
		parts := strings.SplitN(list, ",", 3)
		if len(parts) < 3 {
			return list
		}
		return parts[0] + "," + parts[1] + fmt.Sprintf(",… %d more", strings.Count(list, ",")-1)
	})
}

var quotedIDs = regexp.MustCompile(`'[0-9a-f-]{36}'(,'[0-9a-f-]{36}')+`)

// checkReadPlan asserts the shape of Read's plan. With skipped IDs,
// MariaDB turns a NOT IN list of 1,000 constants or more
// (in_predicate_conversion_threshold) into a subquery on a table value
// constructor, materialized once per statement and probed as a filter of
// the same range scan.
func checkReadPlan(t *testing.T, plan plan, strict, skipIDs bool) {
	t.Helper()
	if plan.sorts {
		t.Errorf("the plan sorts (filesort or temporary table)")
	}
	var outer, dead *planTable
	for i := range plan.tables {
		pt := &plan.tables[i]
		switch pt.name {
		case "o":
			outer = pt
		case "d":
			dead = pt
		case "": // "No tables used": the value list of the skipped IDs
			if !skipIDs {
				t.Errorf("the plan reads %+v", pt)
			}
		default:
			if skipIDs && strings.HasPrefix(pt.name, "<derived") {
				continue // the materialized list of skipped IDs
			}
			t.Errorf("the plan reads %q", pt.name)
		}
	}
	if outer == nil || outer.access != "range" || outer.key != "state_order" || !strings.Contains(outer.indexCondition, "lane") {
		t.Errorf("the outbox is read as %+v; want a range scan of state_order with the lane in the index condition", outer)
	}
	if strict && (dead == nil || dead.access != "ref" || dead.key != "dead_keys") {
		t.Errorf("in strict order the dead letters are read as %+v; want a ref look-up in dead_keys", dead)
	}
	if !strict && dead != nil {
		t.Errorf("without strict order the plan reads dead letters: %+v", dead)
	}
}

// TestSettlePlan: the delivered statement finds its records through by_id
// and each lane row by primary key, with stale statistics too.
func TestSettlePlan(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{})
	analyze(t, ctx, db, s)
	fillPending(t, ctx, db, s, 10_000, 100)
	lanes := holdAll(t, ctx, s, "a")
	recs := readOK(t, ctx, s, lanes, 100)
	want := map[string][2]string{"o": {"range", "by_id"}, "l": {"eq_ref", "PRIMARY"}}
	deleted, _ := s.deleteQuery(recordIDs(recs), laneFence(lanes))
	marked, _ := s.deliveredQuery(recordIDs(recs), laneFence(lanes))
	for _, st := range []struct{ name, query string }{
		{"Settle delivered (DELETE)", deleted},
		{"Settle delivered, Retain (UPDATE)", marked},
	} {
		plan := explainJSON(t, ctx, db, st.query)
		t.Logf("%s: EXPLAIN FORMAT=JSON\n%s", st.name, abridgeIDs(plan.text))
		if len(plan.tables) != 2 {
			t.Errorf("%s: the plan reads %d tables, want 2", st.name, len(plan.tables))
		}
		for i, pt := range plan.tables {
			if w, ok := want[pt.name]; !ok || pt.access != w[0] || pt.key != w[1] || (i == 0) != (pt.name == "o") {
				t.Errorf("%s: table %d of the plan: %+v; want o by (range, by_id), then l by (eq_ref, PRIMARY)", st.name, i, pt)
			}
		}
	}
	deliver(t, ctx, s, lanes, recs)
	if again := readOK(t, ctx, s, lanes, 100); len(again) != 100 || again[0].Seq <= recs[len(recs)-1].Seq {
		t.Fatalf("after settling the first 100, read %d records from seq %d", len(again), again[0].Seq)
	}

	// With failures, all outcomes are one statement of the same shape
	// with Retain (and the failures alone are one without).
	recs = readOK(t, ctx, s, lanes, 100)
	var outcomes []outcome
	for i, r := range recs {
		outcomes = append(outcomes, outcome{id: r.ID, kind: outcomeKind(i % 3), err: "boom", delay: time.Minute})
	}
	query, args, _ := s.settleQuery(outcomes, laneFence(lanes))
	plan := explainJSON(t, ctx, db, query, args...)
	t.Logf("Settle with failures: EXPLAIN FORMAT=JSON\n%s", abridgeIDs(plan.text))
	if len(plan.tables) != 2 {
		t.Errorf("the plan reads %d tables, want 2", len(plan.tables))
	}
	for i, pt := range plan.tables {
		if w, ok := want[pt.name]; !ok || pt.access != w[0] || pt.key != w[1] || (i == 0) != (pt.name == "o") {
			t.Errorf("table %d of the plan with failures: %+v; want o by (range, by_id), then l by (eq_ref, PRIMARY)", i, pt)
		}
	}

	// TakeLanes' UPDATE reaches the lane rows by primary key. (Asked for
	// all the lanes, it reads the whole primary key in order instead:
	// the same rows.)
	some := lanes[:len(lanes)/4]
	ids := make([]int64, len(some))
	for i, l := range some {
		ids[i] = int64(l.ID)
	}
	plan = explainJSON(t, ctx, db, s.takeQuery(ids, outbox.TakeParams{Owner: "b", Lease: time.Minute, Lanes: some}), "b", 1)
	t.Logf("TakeLanes: EXPLAIN FORMAT=JSON\n%s", plan.text)
	if len(plan.tables) != 1 || plan.tables[0].access != "range" || plan.tables[0].key != "PRIMARY" {
		t.Errorf("TakeLanes' UPDATE reads %+v; want a range of the lanes' PRIMARY", plan.tables)
	}
}

// plan is an EXPLAIN FORMAT=JSON, as far as the tests look at it.
type plan struct {
	text   string
	tables []planTable
	sorts  bool // a filesort or a temporary table anywhere
}

type planTable struct {
	name, access, key, indexCondition string
}

// explainJSON runs EXPLAIN FORMAT=JSON of query and collects every table
// it reads, in the order the plan lists them (MariaDB and MySQL both name
// these fields so).
func explainJSON(t testing.TB, ctx context.Context, db *sql.DB, query string, args ...any) plan {
	t.Helper()
	var text string
	// A statement run with SET STATEMENT ... FOR is explained under it.
	prefix := ""
	if strings.HasPrefix(query, "SET STATEMENT ") {
		i := strings.Index(query, " FOR ") + len(" FOR ")
		prefix, query = query[:i], query[i:]
	}
	if err := db.QueryRowContext(ctx, prefix+"EXPLAIN FORMAT=JSON "+query, args...).Scan(&text); err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	var doc any
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("EXPLAIN output: %v", err)
	}
	p := plan{text: text}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				switch k {
				case "filesort", "read_sorted_file", "temporary_table", "using_filesort", "using_temporary_table":
					if b, ok := x.(bool); !ok || b {
						p.sorts = true
					}
				}
			}
			if tb, ok := v["table"].(map[string]any); ok {
				str := func(k string) string { s, _ := tb[k].(string); return s }
				p.tables = append(p.tables, planTable{name: str("table_name"), access: str("access_type"), key: str("key"), indexCondition: str("index_condition")})
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k])
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return p
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

func recordIDs(recs []outbox.Record) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}
