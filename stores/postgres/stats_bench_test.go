package pgstore

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// BenchmarkStats times Stats, and its per-topic statement alone, on the
// outbox of the console's measurement (docs/console.md): 1,000,000
// delivered records kept by retention, 100,000 undelivered over 20 topics
// and 20,000 keys, 1,000 of them dead letters.
//
//	go test -run '^$' -bench BenchmarkStats -benchtime 7x ./stores/postgres
func BenchmarkStats(b *testing.B) {
	ctx := context.Background()
	s, pool := testStore(b, Config{})
	fill(b, ctx, pool, s, 1_000_000, 20_000, 64, true)
	fill(b, ctx, pool, s, 100_000, 20_000, 64, false)
	for _, stmt := range []string{
		"UPDATE " + s.Table() + " SET topic = 'topic-' || seq % 20 WHERE delivered_at IS NULL",
		"UPDATE " + s.Table() + " SET dead_at = now(), last_error = 'x' WHERE seq IN (SELECT seq FROM " + s.Table() +
			" WHERE delivered_at IS NULL ORDER BY seq LIMIT 1000)",
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			b.Fatal(err)
		}
	}
	analyze(b, ctx, pool, s)
	b.Run("Stats", func(b *testing.B) {
		for b.Loop() {
			st, err := s.Stats(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(st.Topics) != 20 || st.Pending != 99_000 || st.Dead != 1000 {
				b.Fatalf("Stats: %d topics, pending %d, dead %d; want 20, 99000, 1000", len(st.Topics), st.Pending, st.Dead)
			}
		}
	})
	for name, stmt := range map[string]string{"totals statement": s.sql.stats, "topics statement": s.sql.statsTopics} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				batch := &pgx.Batch{}
				batch.Queue(s.sql.statsGuard)
				batch.Queue(stmt)
				if err := pool.SendBatch(ctx, batch).Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
