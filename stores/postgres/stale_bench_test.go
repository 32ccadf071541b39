package pgstore

import (
	"context"
	"fmt"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

// BenchmarkReadStaleStatistics times the relay's first reads of a sudden
// backlog with the statistics an outbox usually has (analyzed while empty,
// autovacuum off: the planner believes the table empty) against the same
// reads once the statistics are fresh: a Read of 500 from the head of all
// lanes, and of a quarter of them, 100,000 records over 1,000 keys. The
// issue's target is the same rate in both; the plan guard (see
// TestReadPlanUnderStaleStatistics) makes it the same plan.
//
//	go test -run '^$' -bench ReadStaleStatistics -benchtime 200x ./stores/postgres
func BenchmarkReadStaleStatistics(b *testing.B) {
	ctx := context.Background()
	s, pool := testStore(b, Config{})
	for _, stmt := range []string{
		"ALTER TABLE " + s.Table() + " SET (autovacuum_enabled = false)",
		"ANALYZE " + s.Table(),
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			b.Fatal(err)
		}
	}
	fill(b, ctx, pool, s, 100_000, 1000, len(benchPayload), false)
	all := allLanes(b, ctx, s)
	run := func(stats string) {
		for _, lanes := range [][]int{all, all[:len(all)/4]} {
			b.Run(fmt.Sprintf("%s/lanes=%d", stats, len(lanes)), func(b *testing.B) {
				p := outbox.ReadParams{Lanes: lanes, Limit: 500}
				for range b.N {
					recs, err := s.Read(ctx, p)
					if err != nil {
						b.Fatal(err)
					}
					if len(recs) != 500 {
						b.Fatalf("read %d records, want a full batch of 500", len(recs))
					}
				}
			})
		}
	}
	run("stale")
	analyze(b, ctx, pool, s)
	run("fresh")
}
