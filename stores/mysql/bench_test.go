package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// Benchmarks run against the server the tests use, with the recommended
// DSN option interpolateParams=true. See the README for numbers and the
// command.

func benchDB(b *testing.B) *sql.DB {
	b.Helper()
	db := openDB(b, testDSN(b, func(c *mysql.Config) {
		c.InterpolateParams = true
		c.Params = nil
	}))
	db.SetMaxOpenConns(8)
	return db
}

// settle waits, up to two minutes, until InnoDB has written most pages a
// bulk fill left dirty, so that the timed part does not pay for the fill.
func settle(b *testing.B, db *sql.DB) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		var dirty, total int64
		err := db.QueryRowContext(ctx, "SELECT"+
			" (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'),"+
			" (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_TOTAL')").Scan(&dirty, &total)
		if err != nil {
			return // MySQL 8 keeps these in performance_schema; do without
		}
		if dirty*10 < total {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// BenchmarkEnqueue measures what the outbox adds to a business
// transaction: the transaction alone (an UPDATE and its commit), then with
// one and with ten events enqueued.
func BenchmarkEnqueue(b *testing.B) {
	for _, events := range []int{0, 1, 10} {
		name := "business-only"
		if events > 0 {
			name = fmt.Sprintf("plus-%d-events", events)
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db := benchDB(b)
			s := newStore(b, db, Config{})
			if _, err := db.ExecContext(ctx, `CREATE TABLE users (user_id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, updated_on DATETIME NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO users VALUES (42, 'Ada', NOW())`); err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"user_id":42,"name":"Ada Lovelace","email":"ada@example.com"}`)
			msgs := make([]outbox.Message, events)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, updated_on = NOW() WHERE user_id = ?`, fmt.Sprint("Ada ", i), 42); err != nil {
					b.Fatal(err)
				}
				if events > 0 {
					for j := range msgs {
						msgs[j] = outbox.Message{Topic: "user_updated", Key: "42", Payload: payload}
					}
					if err := s.Enqueue(ctx, tx, msgs...); err != nil {
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

// BenchmarkDrain measures how fast one relay (Concurrency 2) empties a
// backlog of 100,000 records over 1,000 keys into the in-memory publisher.
func BenchmarkDrain(b *testing.B) {
	const backlog = 100_000
	for _, batch := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("batch-%d", batch), func(b *testing.B) {
			ctx := context.Background()
			db := benchDB(b)
			s := newStore(b, db, Config{})
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				if _, err := db.ExecContext(ctx, "DELETE FROM "+s.table); err != nil {
					b.Fatal(err)
				}
				fillPending(b, ctx, db, s, backlog, 1000)
				settle(b, db)
				pub := memory.NewPublisher(memory.PublisherConfig{})
				relay, err := outbox.NewRelay(s, pub, outbox.RelayConfig{
					BatchSize:       batch,
					MinPollInterval: time.Millisecond,
					PollInterval:    10 * time.Millisecond,
					Retention:       0, // the default: Settle deletes what it delivers
					Logger:          slog.New(slog.DiscardHandler),
				})
				if err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error)
				b.StartTimer()
				start := time.Now()
				go func() { done <- relay.Run(rctx) }()
				if err := pub.WaitFor(ctx, backlog); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				cancel()
				<-done
				b.StartTimer()
			}
			b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkRead measures one Read of 100 records of all lanes, in an
// outbox with a backlog of 10,000 pending records that retains no delivered
// record, and in one that retains 1,000,000. The reads walk the backlog
// (AfterSeq moves on) and start over at its end; nothing is written.
func BenchmarkRead(b *testing.B) {
	const batch = 100
	for _, retained := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("retained-%d", retained), func(b *testing.B) {
			ctx := context.Background()
			db := benchDB(b)
			s := newStore(b, db, Config{})
			fillDelivered(b, ctx, db, s, retained, 1000)
			fillPending(b, ctx, db, s, 10_000, 1000)
			analyze(b, ctx, db, s)
			settle(b, db)
			lanes := make([]int, outbox.DefaultLanes)
			for i := range lanes {
				lanes[i] = i
			}
			query, _ := s.readQuery(outbox.ReadParams{Lanes: lanes, Limit: batch})
			b.Logf("%d delivered records retained: EXPLAIN FORMAT=JSON\n%s", retained, explainJSON(b, ctx, db, query).text)
			after := int64(0)
			for b.Loop() {
				recs, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, AfterSeq: after, Limit: batch})
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) < batch {
					after = 0
					continue
				}
				after = recs[len(recs)-1].Seq
			}
		})
	}
}

// BenchmarkReadSettle measures a Read of 100 records and their Settle as
// delivered, in an outbox that retains no delivered record and in one that
// retains 1,000,000. Settle deletes the records it delivers, as the relay
// does by default (Retention 0), so the retained count stays as filled.
func BenchmarkReadSettle(b *testing.B) {
	const batch = 100
	for _, retained := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("retained-%d", retained), func(b *testing.B) {
			ctx := context.Background()
			db := benchDB(b)
			s := newStore(b, db, Config{})
			fillDelivered(b, ctx, db, s, retained, 1000)
			settle(b, db)
			held := holdAll(b, ctx, s, "bench")
			lanes := laneIDs(held)
			for b.Loop() {
				recs, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: batch})
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) < batch {
					b.StopTimer()
					fillPending(b, ctx, db, s, 20*batch, 1000)
					b.StartTimer()
					if len(recs) == 0 {
						continue
					}
				}
				if err := s.Settle(ctx, outbox.SettleParams{Lanes: held, Delivered: recordIDs(recs), Retain: false}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadSkipIDs measures what SkipIDs costs a Read of 100 records of
// all lanes, in a backlog of 10,000 pending records over 1,000 keys: the
// relay reads from the head of its lanes and leaves out the 3,000 records it
// holds. "head" reads the first 100 (nothing held); "cursor" reads the
// 100 after the first 3,000 with AfterSeq (what a cursor would cost);
// "skip-3000" reads the same 100 from the head, skipping the 3,000 IDs.
// On MariaDB, "skip-3000-in-list" runs the same statement with
// in_predicate_conversion_threshold=0, so that the server keeps the NOT IN
// list as a sorted list instead of materializing it into a table.
func BenchmarkReadSkipIDs(b *testing.B) {
	const batch, held = 100, 3000
	ctx := context.Background()
	db := benchDB(b)
	s := newStore(b, db, Config{})
	fillPending(b, ctx, db, s, 10_000, 1000)
	analyze(b, ctx, db, s)
	settle(b, db)
	lanes := make([]int, outbox.DefaultLanes)
	for i := range lanes {
		lanes[i] = i
	}
	first, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: held + batch})
	if err != nil || len(first) != held+batch {
		b.Fatalf("read %d records: %v", len(first), err)
	}
	skip := recordIDs(first[:held])
	want := first[held].ID
	var seqs, everyOther []int64
	for i, r := range first[:held] {
		seqs = append(seqs, r.Seq)
		if i%2 == 0 {
			everyOther = append(everyOther, r.Seq)
		}
	}
	info, err := s.checkServer(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		p      outbox.ReadParams
		prefix string
	}{
		{"head", outbox.ReadParams{Lanes: lanes, Limit: batch}, ""},
		{"cursor", outbox.ReadParams{Lanes: lanes, Limit: batch, AfterSeq: first[held-1].Seq}, ""},
		{"skip-3000", outbox.ReadParams{Lanes: lanes, Limit: batch, SkipIDs: skip}, ""},
		{"skip-3000-in-list", outbox.ReadParams{Lanes: lanes, Limit: batch, SkipIDs: skip}, "SET STATEMENT in_predicate_conversion_threshold=0 FOR "},
		{"skip-3000-seqs", outbox.ReadParams{Lanes: lanes, Limit: batch, SkipIDs: skip, SkipSeqs: outbox.SeqRanges(seqs)}, ""},
		{"skip-1500-scattered-seqs", outbox.ReadParams{Lanes: lanes, Limit: batch, SkipSeqs: outbox.SeqRanges(everyOther)}, ""},
		{"skip-1500-scattered-seqs-in-list", outbox.ReadParams{Lanes: lanes, Limit: batch, SkipSeqs: outbox.SeqRanges(everyOther)}, "SET STATEMENT in_predicate_conversion_threshold=0 FOR "},
	} {
		if tc.prefix != "" && !info.mariaDB {
			continue
		}
		b.Run(tc.name, func(b *testing.B) {
			query, args := s.readQuery(tc.p)
			query = strings.TrimPrefix(query, "SET STATEMENT in_predicate_conversion_threshold=0 FOR ") // the cases say
			b.Logf("EXPLAIN FORMAT=JSON\n%s", abridgeIDs(explainJSON(b, ctx, db, tc.prefix+query, args...).text))
			query = tc.prefix + query
			for b.Loop() {
				rows, err := db.QueryContext(ctx, query, args...)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				var firstID string
				for rows.Next() {
					r, err := scanRecord(rows)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						firstID = r.ID
					}
					n++
				}
				if err := rows.Close(); err != nil {
					b.Fatal(err)
				}
				if n != batch || (tc.name != "head" && !strings.Contains(tc.name, "scattered") && firstID != want) || (strings.Contains(tc.name, "scattered") && firstID != first[1].ID) {
					b.Fatalf("read %d records from %s, want %d from %s", n, firstID, batch, want)
				}
			}
		})
	}
}

// BenchmarkReadHalfTheLanes measures a Read of 500 records by a relay that
// holds half the lanes (every other one) and 1,500 of their records, what
// each of two relays reads: the held records are scattered Seqs, the other
// relay's records lying between them. Backlog: 20,000 pending records over
// 1,000 keys.
//
//	go test -run '^$' -bench ReadHalfTheLanes -benchtime 2s .
func BenchmarkReadHalfTheLanes(b *testing.B) {
	const batch, held = 500, 1500
	ctx := context.Background()
	db := benchDB(b)
	s := newStore(b, db, Config{})
	fillPending(b, ctx, db, s, 20_000, 1000)
	analyze(b, ctx, db, s)
	settle(b, db)
	if _, err := s.checkServer(ctx); err != nil {
		b.Fatal(err)
	}
	var lanes []int
	for l := 0; l < outbox.DefaultLanes; l += 2 {
		lanes = append(lanes, l)
	}
	first, err := s.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: held})
	if err != nil || len(first) != held {
		b.Fatalf("read %d records: %v", len(first), err)
	}
	seqs := make([]int64, held)
	for i, r := range first {
		seqs[i] = r.Seq
	}
	for _, tc := range []struct {
		name string
		p    outbox.ReadParams
	}{
		{"nothing-held", outbox.ReadParams{}},
		{"ids", outbox.ReadParams{SkipIDs: recordIDs(first)}},
		{"seqs", outbox.ReadParams{SkipIDs: recordIDs(first), SkipSeqs: outbox.SeqRanges(seqs)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := tc.p
			p.Lanes, p.Limit = lanes, batch
			query, args := s.readQuery(p)
			b.Logf("%s", abridgeIDs(explainJSON(b, ctx, db, query, args...).text))
			for b.Loop() {
				recs, err := s.Read(ctx, p)
				if err != nil || len(recs) != batch {
					b.Fatalf("read %d records: %v", len(recs), err)
				}
			}
		})
	}
}
