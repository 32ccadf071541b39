package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// Benchmarks (numbers and machine notes in README.md):
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 .
//
// They need a server like the tests (OUTBOX_TEST_POSTGRES_URL or local
// binaries) and skip without one.

// benchPayload is a typical event body: a small JSON document.
var benchPayload = []byte(`{"user_id":"user-000042","name":"Ada Lovelace","email":"ada@example.com","updated_on":"2024-06-01T12:00:00Z","version":7}`)

// BenchmarkEnqueue measures what the outbox adds to a business transaction:
// a transaction inserting one business row alone, then the same transaction
// enqueuing 1 or 10 messages (with and without the NOTIFY).
func BenchmarkEnqueue(b *testing.B) {
	ctx := context.Background()
	s, pool := testStore(b, Config{})
	quiet, err := New(pool, Config{Schema: s.Config().Schema, DisableNotify: true})
	if err != nil {
		b.Fatal(err)
	}
	orders := pgx.Identifier{s.Config().Schema, "orders"}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+orders+` (order_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT NULL, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name  string
		store *Store
		msgs  int
	}{
		{"insert-only", s, 0},
		{"insert+1msg", s, 1},
		{"insert+1msg-nonotify", quiet, 1},
		{"insert+10msgs", s, 10},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			msgs := make([]outbox.Message, c.msgs)
			for b.Loop() {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `INSERT INTO `+orders+` (customer, body) VALUES ($1, $2)`, "user-000042", benchPayload); err != nil {
						return err
					}
					if c.msgs == 0 {
						return nil
					}
					for i := range msgs {
						msgs[i] = outbox.Message{Topic: "orders.created", Key: "user-000042", Payload: benchPayload}
					}
					return c.store.Enqueue(ctx, tx, msgs...)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDrain measures how fast one relay (default concurrency, 2)
// empties a backlog of 100,000 records, spread over 1,000 keys, into the
// in-memory broker, per batch size. The backlog is inserted straight into
// the table (not timed). msgs/s is the figure to read.
func BenchmarkDrain(b *testing.B) {
	const backlog = 100_000
	ctx := context.Background()
	s, pool := testStore(b, Config{})
	for _, batch := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if _, err := pool.Exec(ctx, "TRUNCATE "+s.Table()); err != nil {
					b.Fatal(err)
				}
				fill(b, ctx, pool, s, backlog, 1000, len(benchPayload), false)
				analyze(b, ctx, pool, s)
				pub := memory.NewPublisher(memory.PublisherConfig{})
				relay, err := outbox.NewRelay(s, pub, outbox.RelayConfig{
					BatchSize: batch,
					Logger:    slog.New(slog.DiscardHandler),
				})
				if err != nil {
					b.Fatal(err)
				}
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				b.StartTimer()
				start := time.Now()
				go func() { done <- relay.Run(runCtx) }()
				if err := pub.WaitFor(ctx, backlog); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				b.StopTimer()
				stop()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(backlog*b.N)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkReadSettle measures one Read of a relay holding every lane and
// the Settle of what it read as delivered, with no delivered records kept
// and with 1,000,000 of them: the partial indexes keep Read from reading
// the delivered ones, so the two should cost about the same. The retained
// records are inserted once, with INSERT ... SELECT generate_series (not
// timed).
func BenchmarkReadSettle(b *testing.B) {
	ctx := context.Background()
	for _, retained := range []int{0, 1_000_000} {
		// Set up here, once: the leaf functions below run several times.
		migrated, _ := testStore(b, Config{})
		pool := noFlushPool(b)
		s, err := New(pool, migrated.Config())
		if err != nil {
			b.Fatal(err)
		}
		if retained > 0 {
			fill(b, ctx, pool, s, retained, 1000, len(benchPayload), true)
		}
		held := takeAll(b, ctx, s, fmt.Sprintf("bench-%d", retained), time.Hour, 0)
		for _, limit := range []int{1, 100} {
			b.Run(fmt.Sprintf("retained=%d/batch=%d", retained, limit), func(b *testing.B) {
				// A fresh backlog for this run, and none of the records that
				// earlier runs delivered.
				if _, err := pool.Exec(ctx, "DELETE FROM "+s.Table()+" WHERE delivered_at IS NULL OR delivered_at > now() - interval '10 minutes'"); err != nil {
					b.Fatal(err)
				}
				fill(b, ctx, pool, s, limit*b.N, 1000, len(benchPayload), false)
				analyze(b, ctx, pool, s)
				p := outbox.ReadParams{Lanes: allLanes(b, ctx, s), Limit: limit}
				ids := make([]string, 0, limit)
				b.ResetTimer()
				for range b.N {
					recs, err := s.Read(ctx, p)
					if err != nil {
						b.Fatal(err)
					}
					if len(recs) != limit {
						b.Fatalf("read %d records, want %d", len(recs), limit)
					}
					ids = ids[:0]
					for _, r := range recs {
						ids = append(ids, r.ID)
					}
					if err := s.Settle(ctx, outbox.SettleParams{Lanes: held, Delivered: ids}); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*limit), "ns/record")
			})
		}
	}
}

// noFlushPool returns a pool whose sessions do not wait for the WAL flush at
// commit (synchronous_commit = off), so that a benchmark measures the work
// of its statements rather than the disk's fsync latency.
func noFlushPool(b *testing.B) *pgxpool.Pool {
	return namedPool(b, "pgstore-bench", func(cfg *pgxpool.Config) {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	})
}

// BenchmarkReadSkipIDs measures a Read of 500 records as the relay sends
// it, from the head of its lanes, with nothing skipped and with the 3,000
// records at the head skipped (the records it holds, queued or in flight),
// by ID alone and by ID and Seq (what the relay gives), for a relay
// holding every lane and one holding a quarter of them. The backlog is
// 20,000 pending records over 1,000 keys, with fresh statistics. A record
// skipped by ID still costs a heap fetch (pending_idx holds only seq), so
// that skip costs about what reading those records would; a run of
// skipped Seqs is passed over in the index. The buffers that one
// execution touches are logged (EXPLAIN ANALYZE).
//
//	go test -run '^$' -bench ReadSkipIDs -benchtime 2s -count 3 .
func BenchmarkReadSkipIDs(b *testing.B) {
	ctx := context.Background()
	s, pool := testStore(b, Config{})
	fill(b, ctx, pool, s, 20_000, 1000, len(benchPayload), false)
	analyze(b, ctx, pool, s)
	all := allLanes(b, ctx, s)
	for _, lanes := range [][]int{all, all[:len(all)/4]} {
		recs, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: 3000})
		if err != nil || len(recs) != 3000 {
			b.Fatalf("read %d records: %v", len(recs), err)
		}
		ids, seqs := make([]string, len(recs)), make([]int64, len(recs))
		for i, r := range recs {
			ids[i], seqs[i] = r.ID, r.Seq
		}
		for _, c := range []struct {
			name string
			p    outbox.ReadParams
		}{
			{"skip=0", outbox.ReadParams{}},
			{"skip=3000-ids", outbox.ReadParams{SkipIDs: ids}},
			{"skip=3000-seqs", outbox.ReadParams{SkipIDs: ids, SkipSeqs: outbox.SeqRanges(seqs)}},
		} {
			b.Run(fmt.Sprintf("lanes=%d/%s", len(lanes), c.name), func(b *testing.B) {
				p := c.p
				p.Lanes, p.Limit = lanes, 500
				b.Logf("Read of %d lanes, %s:\n%s", len(lanes), c.name, strings.Join(analyzeRead(b, ctx, pool, s, p), "\n"))
				b.ResetTimer()
				for range b.N {
					recs, err := s.Read(ctx, p)
					if err != nil {
						b.Fatal(err)
					}
					if len(recs) != 500 {
						b.Fatalf("read %d records, want 500", len(recs))
					}
				}
			})
		}
	}
}

// analyzeRead returns the plan of Read's statement for p as it ran once
// (EXPLAIN ANALYZE, BUFFERS, after the plan guard), without its filters
// (the lanes and the skipped records, spelled out).
func analyzeRead(tb testing.TB, ctx context.Context, pool *pgxpool.Pool, s *Store, p outbox.ReadParams) []string {
	tb.Helper()
	tx, err := pool.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, s.sql.planGuard); err != nil {
		tb.Fatal(err)
	}
	query, args := s.readStatement(p)
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) "+query, args...)
	if err != nil {
		tb.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	var kept []string
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "Filter: ") {
			continue
		}
		kept = append(kept, l)
	}
	return kept
}
