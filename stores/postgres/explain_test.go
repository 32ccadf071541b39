package pgstore

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// The claim reads undelivered records through the partial indexes, never the
// delivered ones, however many are kept: the plan must say so. Both the
// plan for the actual parameters and the generic plan that a prepared
// statement settles on after a few runs are checked.
func TestClaimPlanUsesPartialIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := testStore(t, Config{})
	fill(t, ctx, pool, s, 200_000, 1000, 64, true)
	fill(t, ctx, pool, s, 2_000, 100, 64, false)
	analyze(t, ctx, pool, s)

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	args := []any{"explain", 500, false, int64(time.Minute / time.Microsecond), defaultClaimWindow(500), ""}

	custom := explain(t, ctx, conn.Conn(), "EXPLAIN "+s.sql.claim, args...)
	if _, err := conn.Exec(ctx, "PREPARE claim_generic AS "+s.sql.claim); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "DEALLOCATE claim_generic")
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET plan_cache_mode")
	generic := explain(t, ctx, conn.Conn(), "EXPLAIN EXECUTE claim_generic('explain', 500, false, 60000000, 2100, '')")

	for name, plan := range map[string]string{"custom": custom, "generic": generic} {
		t.Logf("%s plan of the claim:\n%s", name, plan)
		for _, index := range []string{"outbox_pending_idx", "outbox_pending_key_idx"} {
			if !strings.Contains(plan, "using "+index) {
				t.Errorf("the %s plan of the claim does not use %s", name, index)
			}
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("the %s plan of the claim scans the whole table", name)
		}
	}
}

func explain(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return strings.Join(lines, "\n")
}

// Behind a clog (a hot key's deep backlog held back by its leased head,
// ahead of everything else) the claim still reads a bounded number of rows:
// no node of the executed plan handles more than the window, however deep
// the backlog. Row counts, not timings, are asserted.
func TestClaimReadsBoundedRowsBehindClog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := testStore(t, Config{})
	const backlog = 30_000
	fill(t, ctx, pool, s, backlog, 1, 64, false) // all of key "key-0"
	others := make([]outbox.Message, 50)
	for i := range others {
		others[i] = outbox.Message{Topic: "t", Key: fmt.Sprintf("other-%02d", i)}
	}
	if err := enqueueCommitted(ctx, pool, s, others...); err != nil {
		t.Fatal(err)
	}
	analyze(t, ctx, pool, s)
	if recs, err := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 1, Lease: time.Hour}); err != nil || len(recs) != 1 {
		t.Fatalf("leasing the hot key's head: %v, %v", recs, err)
	}

	limit := 100
	window := defaultClaimWindow(limit)
	plan := explain(t, ctx, mustConn(t, ctx, pool), "EXPLAIN (ANALYZE, TIMING OFF) "+s.sql.claim,
		"b", limit, false, int64(time.Hour/time.Microsecond), window, "")
	t.Logf("executed plan:\n%s", plan)
	most := 0
	for _, m := range actualRows.FindAllStringSubmatch(plan, -1) {
		rows, _ := strconv.Atoi(m[1])
		loops, _ := strconv.Atoi(m[2])
		most = max(most, rows*loops)
	}
	if most > window {
		t.Errorf("a plan node handled %d rows; the window is %d and the backlog %d", most, window, backlog)
	}
	if first, _, _ := strings.Cut(plan, "\n"); !strings.Contains(first, "actual rows=50 loops=1") {
		t.Errorf("the claim did not take the 50 records of the other keys")
	}
}

var actualRows = regexp.MustCompile(`actual rows=(\d+) loops=(\d+)`)

func mustConn(t *testing.T, ctx context.Context, pool *pgxpool.Pool) *pgx.Conn {
	t.Helper()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Release)
	return c.Conn()
}

// With one batch leased on a wide backlog (many keys, as in `outbox bench`'s
// drain: 100,000 records over 1,000 keys), the next claim still fills a whole
// batch from its window, without walking the keys. With -v it prints the
// executed plan with timings and buffers: the profile docs/benchmarks.md
// quotes (`go test -v -run TestClaimBesideALeasedBatch ./stores/postgres`).
// Only row counts are asserted.
func TestClaimBesideALeasedBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := testStore(t, Config{})
	fill(t, ctx, pool, s, 100_000, 1000, 256, false)
	analyze(t, ctx, pool, s)
	if recs, err := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 500, Lease: time.Hour}); err != nil || len(recs) != 500 {
		t.Fatalf("leasing the first batch: %d records, %v", len(recs), err)
	}
	plan := explain(t, ctx, mustConn(t, ctx, pool), "EXPLAIN (ANALYZE, BUFFERS) "+s.sql.claim,
		"b", 500, false, int64(time.Hour/time.Microsecond), defaultClaimWindow(500), "")
	t.Logf("executed plan:\n%s", plan)
	if first, _, _ := strings.Cut(plan, "\n"); !strings.Contains(first, "rows=500 loops=1") {
		t.Errorf("the claim beside a leased batch did not fill its batch of 500: %s", first)
	}
	if !regexp.MustCompile(`CTE walk_on\n\s+->  Recursive Union .*\(never executed\)`).MatchString(plan) {
		t.Errorf("the claim walked the keys although its window had enough records")
	}
}
