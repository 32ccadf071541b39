package mysqlstore

import (
	"context"
	"database/sql"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Enqueue's INSERT runs as a prepared statement shared by every Store on one
// *sql.DB: a Store per request prepares no statement of its own. In a transaction of another *sql.DB it runs as a plain
// statement, and writes all the same.
func TestEnqueuePreparesOncePerDB(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dsn := testDSN(t, nil)
	db, other := openDB(t, dsn), openDB(t, dsn)
	first := newStore(t, db, Config{})
	enqueue := func(s *Store, h *sql.DB) {
		t.Helper()
		tx, err := h.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(first, db)
	prepared := func() int {
		n := 0
		preparedInserts.Range(func(k, _ any) bool {
			if k.(stmtKey).db == db {
				n++
			}
			return true
		})
		return n
	}
	for range 20 {
		s, err := New(db, Config{Table: first.cfg.Table})
		if err != nil {
			t.Fatal(err)
		}
		enqueue(s, db)
	}
	if n := prepared(); n != 1 {
		t.Fatalf("21 Stores on one *sql.DB, each enqueueing one message, hold %d prepared statements; want the one they share", n)
	}
	enqueue(first, other)
	st, err := first.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 22 {
		t.Fatalf("pending %d; want the 22 records enqueued through both handles", st.Pending)
	}
}
