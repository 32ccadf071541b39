package sqlitestore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// BenchmarkEnqueue measures what the outbox adds to a business transaction:
// an UPDATE of one row alone, then with 1 and 10 messages enqueued, committed
// with synchronous=FULL (the default of Open) and NORMAL.
//
//	go test -run '^$' -bench Enqueue -benchtime 2s
func BenchmarkEnqueue(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		for _, n := range []int{0, 1, 10} {
			name := fmt.Sprintf("sync=%s/messages=%d", sync, n)
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				db := openSync(b, filepath.Join(b.TempDir(), "bench.db"), sync)
				store := newStore(b, db, sqlitestore.Config{})
				if _, err := db.ExecContext(ctx, `CREATE TABLE users (user_id TEXT PRIMARY KEY, name TEXT NOT NULL, updated_on INTEGER NOT NULL);
					INSERT INTO users VALUES ('user-42', 'Ada', 0)`); err != nil {
					b.Fatal(err)
				}
				payload := []byte(`{"user_id":"user-42","name":"Ada Lovelace","email":"ada@example.com"}`)
				msgs := make([]outbox.Message, n)
				b.ResetTimer()
				for i := range b.N {
					for j := range msgs {
						msgs[j] = outbox.Message{Topic: "user_updated", Key: "user-42", Payload: payload}
					}
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, updated_on = ? WHERE user_id = ?`,
						fmt.Sprint("Ada ", i), i, "user-42"); err != nil {
						b.Fatal(err)
					}
					if n > 0 {
						if err := store.Enqueue(ctx, tx, msgs...); err != nil {
							b.Fatal(err)
						}
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDrain measures a relay draining a backlog of 100,000 messages
// (1,000 keys) into the in-memory publisher, at three batch sizes. The
// backlog is written before the timer starts; msgs/s is the figure to read.
//
//	go test -run '^$' -bench Drain -benchtime 1x
func BenchmarkDrain(b *testing.B) {
	const backlog, keys = 100_000, 1000
	for _, sc := range benchCases() {
		b.Run(sc.name, func(b *testing.B) {
			batch := sc.batch
			var total time.Duration
			for range b.N {
				b.StopTimer()
				db, store := backlogStore(b, backlog, keys, sc.sync)
				pub := memory.NewPublisher(memory.PublisherConfig{})
				relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{
					BatchSize: batch,
					Retention: 0, // the default: Settle deletes what it delivers
					Logger:    slog.New(slog.DiscardHandler),
				})
				if err != nil {
					b.Fatal(err)
				}
				ctx, stop := context.WithCancel(context.Background())
				done := make(chan error, 1)
				b.StartTimer()
				start := time.Now()
				go func() { done <- relay.Run(ctx) }()
				if err := pub.WaitFor(context.Background(), backlog); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				stop()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				_ = db.Close()
			}
			b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "msgs/s")
		})
	}
}

// openSync opens path like Open, with synchronous set to sync.
func openSync(b *testing.B, path, sync string) *sql.DB {
	b.Helper()
	db, err := sqlitestore.OpenDSN(strings.Replace(sqlitestore.DSN(path), "_synchronous=FULL", "_synchronous="+sync, 1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

// backlogStore returns a migrated store holding n undelivered messages.
func backlogStore(b *testing.B, n, keys int, sync string) (*sql.DB, *sqlitestore.Store) {
	b.Helper()
	ctx := context.Background()
	db := openSync(b, filepath.Join(b.TempDir(), "bench.db"), sync)
	store := newStore(b, db, sqlitestore.Config{})
	payload := []byte(`{"user_id":"user-42","name":"Ada Lovelace","email":"ada@example.com"}`)
	for written := 0; written < n; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		msgs := make([]outbox.Message, min(1000, n-written))
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "user_updated", Key: fmt.Sprint("user-", (written+i)%keys), Payload: payload}
		}
		if err := store.Enqueue(ctx, tx, msgs...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		written += len(msgs)
	}
	return db, store
}

// BenchmarkReadSettle measures the store alone: one relay holding every
// lane reads and settles as delivered a 100,000-message backlog (1,000
// keys), without a relay loop or publisher. Settle deletes what it
// delivers, as the relay does by default (Retention 0). The figures are per
// message.
//
//	go test -run '^$' -bench ReadSettle -benchtime 1x
func BenchmarkReadSettle(b *testing.B) {
	const backlog, keys = 100_000, 1000
	for _, sc := range benchCases() {
		b.Run(sc.name, func(b *testing.B) {
			batch := sc.batch
			ctx := context.Background()
			var read, settle time.Duration
			for range b.N {
				b.StopTimer()
				db, store := backlogStore(b, backlog, keys, sc.sync)
				lanes := takeAll(b, ctx, store, "bench", time.Hour)
				b.StartTimer()
				var after int64
				for done := 0; done < backlog; {
					t0 := time.Now()
					recs, err := store.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), AfterSeq: after, Limit: batch})
					if err != nil || len(recs) == 0 {
						b.Fatalf("read %d: %v", len(recs), err)
					}
					t1 := time.Now()
					if err := store.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: ids(recs), Retain: false}); err != nil {
						b.Fatal(err)
					}
					read += t1.Sub(t0)
					settle += time.Since(t1)
					done += len(recs)
					after = recs[len(recs)-1].Seq
				}
				b.StopTimer()
				_ = db.Close()
			}
			n := float64(backlog * b.N)
			b.ReportMetric(float64(read.Microseconds())/n, "read-µs/msg")
			b.ReportMetric(float64(settle.Microseconds())/n, "settle-µs/msg")
		})
	}
}

type benchCase struct {
	name  string
	sync  string
	batch int
}

// benchCases are the drain settings: batch sizes 100, 500 and 1000 with
// synchronous=FULL (Open's default) and NORMAL.
func benchCases() []benchCase {
	var cases []benchCase
	for _, sync := range []string{"FULL", "NORMAL"} {
		for _, batch := range []int{100, 500, 1000} {
			cases = append(cases, benchCase{fmt.Sprintf("sync=%s/batch=%d", sync, batch), sync, batch})
		}
	}
	return cases
}

// BenchmarkReadSkipIDs measures a Read of 500 records as the relay sends
// it, from the head of its lanes, with nothing skipped and with the 3,000
// records at the head skipped (the records it holds, queued or in
// flight) by ID alone and by ID and Seq (what the relay gives), for a relay holding every lane and one holding a quarter of
// them, over a backlog of 20,000 records (1,000 keys).
//
//	go test -run '^$' -bench ReadSkipIDs -benchtime 2s -count 3
func BenchmarkReadSkipIDs(b *testing.B) {
	ctx := context.Background()
	_, store := backlogStore(b, 20_000, 1000, "NORMAL")
	all := make([]int, outbox.DefaultLanes)
	for i := range all {
		all[i] = i
	}
	for _, lanes := range [][]int{all, all[:len(all)/4]} {
		head, err := store.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: 3000})
		if err != nil || len(head) != 3000 {
			b.Fatalf("read %d: %v", len(head), err)
		}
		seqs := make([]int64, len(head))
		for i, r := range head {
			seqs[i] = r.Seq
		}
		for _, c := range []struct {
			name string
			p    outbox.ReadParams
		}{
			{"skip=0", outbox.ReadParams{}},
			{"skip=3000-ids", outbox.ReadParams{SkipIDs: ids(head)}},
			{"skip=3000-seqs", outbox.ReadParams{SkipIDs: ids(head), SkipSeqs: outbox.SeqRanges(seqs)}},
		} {
			b.Run(fmt.Sprintf("lanes=%d/%s", len(lanes), c.name), func(b *testing.B) {
				p := c.p
				p.Lanes, p.Limit = lanes, 500
				for range b.N {
					recs, err := store.Read(ctx, p)
					if err != nil || len(recs) != 500 {
						b.Fatalf("read %d: %v", len(recs), err)
					}
				}
			})
		}
	}
}
