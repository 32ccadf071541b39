package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// explain returns the plan of sql for args as the store runs it: in a
// transaction, after guard (the plan guard or statsGuard) when not empty. With generic, the
// plan is the generic one that a prepared statement may settle on after a
// few runs (PREPARE, then EXPLAIN EXECUTE with plan_cache_mode forced).
func explain(t *testing.T, ctx context.Context, pool *pgxpool.Pool, s *Store, guard string, generic bool, sql string, args ...any) string {
	t.Helper()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	conn := c.Conn()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if guard != "" {
		if _, err := tx.Exec(ctx, guard); err != nil {
			t.Fatal(err)
		}
	}
	query := "EXPLAIN " + sql
	if generic {
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "PREPARE explained AS "+sql); err != nil {
			t.Fatalf("PREPARE %s: %v", sql, err)
		}
		defer conn.Exec(ctx, "DEALLOCATE explained")
		// The arguments as literals: the plan is generic whatever they are.
		lits := make([]string, len(args))
		for i, a := range args {
			lits[i] = literal(a)
		}
		query, args = "EXPLAIN EXECUTE explained("+strings.Join(lits, ", ")+")", nil
	}
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return strings.Join(lines, "\n")
}

// literal writes an argument of the statements explained here as SQL.
func literal(a any) string {
	switch v := a.(type) {
	case []int32:
		return "'" + intArray(v) + "'"
	case []string:
		return "'" + textArray(v) + "'"
	case []int64:
		s := make([]string, len(v))
		for i, e := range v {
			s[i] = strconv.FormatInt(e, 10)
		}
		return "'{" + strings.Join(s, ",") + "}'"
	case []pgtype.UUID:
		s := make([]string, len(v))
		for i, e := range v {
			s[i] = e.String()
		}
		return "'{" + strings.Join(s, ",") + "}'"
	case string:
		return "'" + v + "'"
	}
	return fmt.Sprint(a)
}

// Read's plan must not depend on the table's statistics. The table is
// analyzed while empty, autovacuum is off for it, and then it receives a
// backlog of 100,000 records over 1,000 keys: the planner's picture is as
// wrong as it gets. For all lanes and for a quarter of them, in every form
// of the statement (skipped keys, strict order), with no skipped IDs and
// with the 3,000 records at the head of the table skipped (what the relay
// passes: the records it holds), the custom and the generic
// plan must be a Limit over an Index Scan of pending_idx in Seq order
// (the lane and the skipped IDs a Filter), with no Sort, no sequential or bitmap scan of the
// backlog, and no join or subplan but strict order's anti join: one probe
// of dead_key_idx per record, never a hash or a materialized list of the
// dead letters. The same holds once the statistics are fresh (with 20
// dead letters the planner would otherwise compare each record with a
// materialized list of them). Then Read returns full batches, in Seq
// order, of the lanes asked for, without the skipped IDs.
func TestReadPlanUnderStaleStatistics(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	staleStatistics(t, ctx, pool, s)
	fill(t, ctx, pool, s, 100_000, 1000, 64, false)
	// A few dead letters, for strict order to look at.
	if _, err := pool.Exec(ctx, "UPDATE "+s.Table()+" SET dead_at = now() WHERE seq % 5000 = 7"); err != nil {
		t.Fatal(err)
	}

	// The IDs of the first 3,000 records: what a relay holding every lane
	// would skip at the head of the backlog.
	rows, err := pool.Query(ctx, "SELECT id::text, seq FROM "+s.Table()+" ORDER BY seq LIMIT 3000")
	if err != nil {
		t.Fatal(err)
	}
	type held struct {
		ID  string
		Seq int64
	}
	heads, err := pgx.CollectRows(rows, pgx.RowToStructByPos[held])
	if err != nil {
		t.Fatal(err)
	}
	var head []string
	var headSeqs, everyOther []int64
	for i, h := range heads {
		head = append(head, h.ID)
		headSeqs = append(headSeqs, h.Seq)
		if i%2 == 0 {
			everyOther = append(everyOther, h.Seq)
		}
	}
	// Held as IDs alone (what other callers give), as the relay gives
	// them (IDs and Seqs: one run), and every other one of them by Seq
	// (runs of one: what a relay holds when another relay's lanes lie
	// between its records).
	skips := map[string]outbox.ReadParams{
		"nothing skipped":             {},
		"3000 skipped IDs":            {SkipIDs: head},
		"3000 skipped Seqs":           {SkipIDs: head, SkipSeqs: outbox.SeqRanges(slices.Clone(headSeqs))},
		"1500 scattered skipped Seqs": {SkipSeqs: outbox.SeqRanges(everyOther)},
	}

	all := allLanes(t, ctx, s)
	lanes := map[string][]int32{"all lanes": toInt32(all), "a quarter of the lanes": toInt32(all[:len(all)/4])}
	pending := s.names.table + "_pending_idx"
	deadKey := s.names.table + "_dead_key_idx"
	check := func(stats string) {
		for name, ls := range lanes {
			for ids, p := range skips {
				for _, skip := range []bool{false, true} {
					for _, strict := range []bool{false, true} {
						p.Lanes, p.Limit, p.StrictOrder, p.SkipKeys = toInts(ls), 500, strict, nil
						if skip {
							p.SkipKeys = []string{"key-1", "key-2"}
						}
						query, args := s.readStatement(p)
						for _, generic := range []bool{false, true} {
							what := fmt.Sprintf("%s statistics, %s, %s, skip keys %v, strict %v, generic %v", stats, name, ids, skip, strict, generic)
							plan := explain(t, ctx, pool, s, s.sql.planGuard, generic, query, args...)
							if !generic {
								// The custom plan spells the skipped IDs and Seqs out.
								t.Logf("Read plan (%s):\n%s", what, elide(plan))
							} else {
								t.Logf("Read plan (%s):\n%s", what, plan)
							}
							_, _, single := readRanges(0, p.SkipSeqs) // a run is passed over, not filtered
							checkReadPlan(t, what, plan, pending, deadKey, strict, (len(p.SkipIDs) > 0 && len(p.SkipSeqs) == 0) || generic, len(single) > 0 || generic)
						}
					}
				}
			}
		}
	}
	check("stale")

	// Read returns full batches, in Seq order, of its lanes.
	for name, ls := range lanes {
		ints := make([]int, len(ls))
		for i, l := range ls {
			ints[i] = int(l)
		}
		for ids, p := range skips {
			p.Lanes, p.Limit, p.StrictOrder, p.SkipKeys = ints, 500, true, []string{"key-3"}
			recs, err := s.Read(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 500 {
				t.Fatalf("Read of %s, %s returned %d records; want a full batch of 500", name, ids, len(recs))
			}
			for i, r := range recs {
				if !slices.Contains(ints, r.Lane) || r.Key == "key-3" || slices.Contains(p.SkipIDs, r.ID) ||
					(len(p.SkipSeqs) > 0 && slices.ContainsFunc(p.SkipSeqs, func(g outbox.SeqRange) bool { return g.From <= r.Seq && r.Seq <= g.To })) ||
					(i > 0 && r.Seq <= recs[i-1].Seq) {
					t.Fatalf("Read of %s, %s returned record %d of lane %d, key %s, seq %d", name, ids, i, r.Lane, r.Key, r.Seq)
				}
			}
		}
	}

	// What the guard prevents: with fresh statistics, one lane and skipped
	// keys, the planner's own choice can be a sequential scan of the whole
	// table and a sort (logged, not asserted: it varies).
	analyze(t, ctx, pool, s)
	t.Logf("Read plan without the guard, fresh statistics, 1 lane, skipped keys:\n%s",
		explainRead(t, ctx, pool, s, "", outbox.ReadParams{Lanes: []int{0}, Limit: 500, SkipKeys: []string{"key-1", "key-2"}}))
	check("fresh")
}

// checkReadPlan checks the shape of a plan of Read; with skipIDs and
// skipSeqs, that the skipped IDs and Seqs are filters of the scan (a custom
// plan drops the test of an empty list).
func checkReadPlan(t *testing.T, what, plan, pending, deadKey string, strict, skipIDs, skipSeqs bool) {
	t.Helper()
	first, _, _ := strings.Cut(plan, "\n")
	if !strings.HasPrefix(first, "Limit") {
		t.Errorf("%s: the plan does not start with a Limit", what)
	}
	if !strings.Contains(plan, "Function Scan on g") {
		t.Errorf("%s: the plan does not take the ranges of Seq in turn", what)
	}
	if !strings.Contains(plan, "Index Scan using "+pending+" on ") || !strings.Contains(plan, "Index Cond: ((seq > g.lo) AND (seq < g.hi))") {
		t.Errorf("%s: the plan does not scan %s over each range of Seq", what, pending)
	}
	if !strings.Contains(plan, "Filter: ") || !strings.Contains(plan, "lane = ANY") {
		t.Errorf("%s: the lane is not a filter of the scan", what)
	}
	if skipIDs && !strings.Contains(plan, "id <> ALL") {
		t.Errorf("%s: the skipped IDs are not a filter of the scan", what)
	}
	if skipSeqs && !strings.Contains(plan, "seq <> ALL") {
		t.Errorf("%s: the skipped Seqs are not a filter of the scan", what)
	}
	for _, bad := range []string{"Sort", "Seq Scan", "Bitmap", "Materialize", "Hash", "Merge", "Gather"} {
		if strings.Contains(plan, bad) {
			t.Errorf("%s: the plan has a %s", what, bad)
		}
	}
	// One Nested Loop takes the ranges in turn; strict order adds its
	// anti join.
	joins := strings.Count(plan, "Join") + strings.Count(plan, "SubPlan") + strings.Count(plan, "Nested Loop") - 1
	switch {
	case strings.Count(plan, "Nested Loop") < 1:
		t.Errorf("%s: the plan has no Nested Loop over the ranges of Seq", what)
	case !strict && joins > 0:
		t.Errorf("%s: the plan joins or runs a subplan per row", what)
	case strict && (!strings.Contains(plan, "Nested Loop Anti Join") || !strings.Contains(plan, "Scan using "+deadKey) ||
		!strings.Contains(plan, "Index Cond: ((key = o.key) AND (seq < o.seq))")):
		t.Errorf("%s: strict order is not one probe of %s per record", what, deadKey)
	}
}

// elide shortens the long array literals of a plan for the log.
func elide(plan string) string {
	lines := strings.Split(plan, "\n")
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:150] + " ... " + l[len(l)-100:]
		}
	}
	return strings.Join(lines, "\n")
}

func toInt32(ls []int) []int32 {
	out := make([]int32, len(ls))
	for i, l := range ls {
		out[i] = int32(l)
	}
	return out
}

// Settle finds its records through the primary key on id, under stale
// statistics too: it never scans the table. And the charge of TakeLanes
// reads pending records like Read does.
func TestSettleAndTakePlans(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	staleStatistics(t, ctx, pool, s)
	fill(t, ctx, pool, s, 50_000, 1000, 64, false)
	recs := readAll(t, ctx, s, 100)
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	lanes, epochs := laneArrays(epochsOf(allLanes(t, ctx, s)))
	pkey := s.names.table + "_pkey"
	scan := "Seq Scan on " + s.names.table + " o"
	for _, stats := range []string{"stale", "fresh"} {
		if stats == "fresh" {
			analyze(t, ctx, pool, s)
		}
		errs := make([]string, len(ids))
		delays := make([]int64, len(ids))
		dead := make([]bool, len(ids))
		for name, plan := range map[string]string{
			"delivered": explain(t, ctx, pool, s, "", false, s.sql.delivered, ids, lanes, epochs),
			"failed":    explain(t, ctx, pool, s, "", false, s.sql.failed, ids, lanes, epochs, errs, delays, dead),
		} {
			t.Logf("Settle (%s) plan, %s statistics:\n%s", name, stats, plan)
			if !strings.Contains(plan, pkey) || strings.Contains(plan, scan) {
				t.Errorf("Settle (%s), %s statistics: the plan does not find the records through %s", name, stats, pkey)
			}
		}
		plan := explain(t, ctx, pool, s, s.sql.planGuard, false, s.sql.takeLanes, "r", lanes, epochs, int64(60_000_000), 100)
		t.Logf("TakeLanes plan, %s statistics:\n%s", stats, plan)
		if !strings.Contains(plan, "Index Scan using "+s.names.table+"_pending_idx") || strings.Contains(plan, "Sort") ||
			strings.Contains(plan, scan) {
			t.Errorf("TakeLanes, %s statistics: the charge does not read pending records through pending_idx in Seq order", stats)
		}
	}
}

func epochsOf(ids []int) []outbox.Lane {
	out := make([]outbox.Lane, len(ids))
	for i, id := range ids {
		out[i] = outbox.Lane{ID: id}
	}
	return out
}

// Stats reads no delivered record: with 50,000 retained deliveries beside a
// small backlog and a few dead letters over three topics, under statistics
// taken on the empty table and under fresh ones, the plans of its totals and
// of its per-topic figures scan the partial indexes of pending records and
// of dead letters, never the table, its primary key or the index of
// deliveries (before statsGuard, the whole table was read: 290–400 ms with
// 1.1 million rows); and its counts are right.
func TestStatsReadsNoDelivery(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	staleStatistics(t, ctx, pool, s)
	fill(t, ctx, pool, s, 50_000, 1000, 64, true)
	fill(t, ctx, pool, s, 300, 100, 64, false)
	for _, stmt := range []string{
		// The backlog over three topics, 100 records each.
		"UPDATE " + s.Table() + " SET topic = 'fill-' || seq % 3 WHERE delivered_at IS NULL",
		"UPDATE " + s.Table() + " SET dead_at = now(), last_error = 'x' WHERE seq IN (SELECT seq FROM " + s.Table() +
			" WHERE delivered_at IS NULL ORDER BY seq LIMIT 7)",
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, "SELECT topic, count(*) FILTER (WHERE dead_at IS NULL), count(*) FILTER (WHERE dead_at IS NOT NULL) FROM "+
		s.Table()+" WHERE delivered_at IS NULL GROUP BY topic ORDER BY topic")
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.TopicStats, error) {
		var ts outbox.TopicStats
		return ts, row.Scan(&ts.Topic, &ts.Pending, &ts.Dead)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Indexes that hold delivered records: a plan using one reads them.
	unwanted := []string{"Seq Scan on " + s.names.table, s.names.table + "_pkey", s.names.table + "_delivered_idx"}
	for _, stats := range []string{"stale", "fresh"} {
		if stats == "fresh" {
			analyze(t, ctx, pool, s)
		}
		for name, stmt := range map[string]string{"totals": s.sql.stats, "topics": s.sql.statsTopics} {
			plan := explain(t, ctx, pool, s, s.sql.statsGuard, false, stmt)
			t.Logf("Stats plan (%s), %s statistics:\n%s", name, stats, plan)
			// Both partial indexes of dead letters (dead_idx, dead_key_idx)
			// hold them alone; either will do.
			if !strings.Contains(plan, s.names.table+"_pending_idx") ||
				!strings.Contains(plan, s.names.table+"_dead_idx") && !strings.Contains(plan, s.names.table+"_dead_key_idx") ||
				slices.ContainsFunc(unwanted, func(u string) bool { return strings.Contains(plan, u) }) {
				t.Errorf("Stats (%s), %s statistics: the plan does not count through the partial indexes of pending records and dead letters alone", name, stats)
			}
		}
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != 293 || st.Dead != 7 || st.OldestPending.IsZero() {
			t.Errorf("Stats, %s statistics: pending %d, dead %d, oldest %v; want 293, 7 and a time", stats, st.Pending, st.Dead, st.OldestPending)
		}
		got := slices.Clone(st.Topics)
		slices.SortFunc(got, func(a, b outbox.TopicStats) int { return strings.Compare(a.Topic, b.Topic) })
		if len(got) != len(want) {
			t.Fatalf("Stats, %s statistics: topics %+v; want %+v", stats, got, want)
		}
		for i := range got {
			if got[i].Topic != want[i].Topic || got[i].Pending != want[i].Pending || got[i].Dead != want[i].Dead || got[i].OldestPending.IsZero() {
				t.Errorf("Stats, %s statistics: topics %+v; want %+v, each with its oldest pending record", stats, got, want)
				break
			}
		}
	}
}

// staleStatistics gives the planner the worst picture of the table: its
// statistics taken now, while it is empty, and autovacuum kept from
// refreshing them.
func staleStatistics(t *testing.T, ctx context.Context, pool *pgxpool.Pool, s *Store) {
	t.Helper()
	for _, stmt := range []string{
		"ALTER TABLE " + s.Table() + " SET (autovacuum_enabled = false)",
		"ANALYZE " + s.Table(),
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
}

func toInts(ls []int32) []int {
	out := make([]int, len(ls))
	for i, l := range ls {
		out[i] = int(l)
	}
	return out
}

// explainRead returns the plan of Read's statement for p, after guard.
func explainRead(t *testing.T, ctx context.Context, pool *pgxpool.Pool, s *Store, guard string, p outbox.ReadParams) string {
	t.Helper()
	query, args := s.readStatement(p)
	return explain(t, ctx, pool, s, guard, false, query, args...)
}

// A run of records the relay holds is passed over in the index: the scan
// neither fetches nor filters them, where held records given by ID alone
// are each fetched from the heap and dropped by the filter.
func TestReadPassesOverHeldRuns(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	fill(t, ctx, pool, s, 10_000, 100, 64, false)
	lanes := allLanes(t, ctx, s)
	held, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: 3000})
	if err != nil || len(held) != 3000 {
		t.Fatalf("read %d records to hold: %v", len(held), err)
	}
	ids, seqs := make([]string, len(held)), make([]int64, len(held))
	for i, r := range held {
		ids[i], seqs[i] = r.ID, r.Seq
	}
	removed := func(p outbox.ReadParams) int {
		plan := analyzeRead(t, ctx, pool, s, p)
		t.Logf("%d IDs, %d ranges of Seq skipped:\n%s", len(p.SkipIDs), len(p.SkipSeqs), strings.Join(plan, "\n"))
		n := 0
		for _, l := range plan {
			if _, v, ok := strings.Cut(l, "Rows Removed by Filter: "); ok {
				k, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				n += k
			}
		}
		return n
	}
	byID := outbox.ReadParams{Lanes: lanes, Limit: 500, SkipIDs: ids}
	bySeq := outbox.ReadParams{Lanes: lanes, Limit: 500, SkipIDs: ids, SkipSeqs: outbox.SeqRanges(seqs)}
	if n := removed(byID); n < len(held) {
		t.Errorf("skipped by ID, the scan dropped %d rows; want the %d held (each fetched and filtered)", n, len(held))
	}
	if n := removed(bySeq); n != 0 {
		t.Errorf("skipped by Seq, the scan dropped %d rows; want 0 (the held run passed over in the index)", n)
	}
	for _, p := range []outbox.ReadParams{byID, bySeq} {
		recs, err := s.Read(ctx, p)
		if err != nil || len(recs) != 500 || recs[0].Seq <= held[len(held)-1].Seq {
			t.Fatalf("Read skipping the held records = %d records, %v; want 500 after Seq %d", len(recs), err, held[len(held)-1].Seq)
		}
	}
}
