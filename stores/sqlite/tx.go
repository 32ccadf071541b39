package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"math/rand/v2"
	"strings"
	"time"
)

// Writes. SQLite has one writer at a time: a statement, or a transaction
// begun with BEGIN IMMEDIATE, holds the write lock from its first step to
// its end, and no connection of this or any other process can take it
// meanwhile. So the store needs no row locks: most of its writes are one
// statement, which is atomic, and those that read before they write
// (SyncLanes, TakeLanes, Settle with failures, Migrate) run in a
// BEGIN IMMEDIATE transaction. Either way the lock is taken before the
// first read, so a write waits its turn under the busy timeout instead of
// failing with SQLITE_BUSY the way a deferred transaction that read first
// can.
//
// The lock is waited for until ctx ends or Config.LockTimeout passes: first
// in the file's in-process queue (see fileHub), then in SQLite, which waits
// for the connection's busy_timeout; the store retries after that, so it
// does not depend on the DSN setting one.

// write runs fn, which executes one write statement, with the store's clock
// read once the in-process queue let it through (in Unix microseconds), and
// retries it while another process holds the write lock. A statement that
// failed with SQLITE_BUSY changed nothing, so retrying it is safe.
func (s *Store) write(ctx context.Context, what string, fn func(now int64) error) error {
	hub, err := s.hub(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(s.lockTimeout)
	if hub != nil {
		if err := hub.acquire(ctx, s.lockTimeout); err != nil {
			return translate(what, err)
		}
		defer hub.release()
	}
	return translate(what, retryBusy(ctx, deadline, func() error { return fn(s.clock()) }))
}

// writeTx runs fn in a transaction that holds SQLite's write lock from its
// start (BEGIN IMMEDIATE), whatever _txlock the database was opened with,
// for writes of more than one statement. fn receives the store's clock
// read once the lock was taken.
func (s *Store) writeTx(ctx context.Context, what string, fn func(conn *sql.Conn, now int64) error) error {
	hub, err := s.hub(ctx)
	if err != nil {
		return err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return translate(what, err)
	}
	defer conn.Close()
	// Connection first, then the lock: a transaction that holds the lock
	// never waits for a connection held by someone queueing for the lock.
	deadline := time.Now().Add(s.lockTimeout)
	if hub != nil {
		if err := hub.acquire(ctx, s.lockTimeout); err != nil {
			return translate(what, err)
		}
		defer hub.release()
	}
	err = retryBusy(ctx, deadline, func() error {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		return err
	})
	if err != nil {
		return translate(what, err)
	}
	if err := fn(conn, s.clock()); err != nil {
		rollback(conn)
		return translate(what, err)
	}
	// COMMIT is not cancelled with ctx: once fn succeeded, the work is
	// either kept or undone, never left unknown to the caller because a
	// context ended between the last statement and the commit.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		rollback(conn)
		return translate(what, err)
	}
	return nil
}

// retryBusy calls fn until it succeeds, fails with an error other than
// SQLITE_BUSY, ctx ends or the deadline passes.
func retryBusy(ctx context.Context, deadline time.Time, fn func() error) error {
	wait := time.Millisecond
	for {
		err := fn()
		if err == nil || !isBusy(err) {
			return err
		}
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		// Jitter keeps waiting connections from retrying in lockstep.
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// rollback ends the transaction on conn. When that fails for any reason but
// "no transaction is active" (SQLite rolls back by itself after some
// errors), the connection is discarded rather than returned to the pool
// with a transaction that might still be open: closing it rolls back.
func rollback(conn *sql.Conn) {
	_, err := conn.ExecContext(context.Background(), "ROLLBACK")
	if err == nil || strings.Contains(err.Error(), "no transaction is active") {
		return
	}
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// clock is the store's time: the local clock, which SQLite, an embedded
// database, shares with every process that opens the file.
func (s *Store) clock() int64 { return s.now().UnixMicro() }

// stmt returns the prepared statement for query, preparing it on first use.
// database/sql keeps it prepared on each connection it runs on, so the
// store's larger statements are parsed once per connection, not per call.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.stmts == nil {
		s.stmts = make(map[string]*sql.Stmt)
	}
	s.stmts[query] = st
	return st, nil
}

// execStmt runs a prepared write statement and returns the rows it changed.
func (s *Store) execStmt(ctx context.Context, what, query string, args func(now int64) []any) (int64, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return 0, translate(what, err)
	}
	var n int64
	err = s.write(ctx, what, func(now int64) error {
		res, err := st.ExecContext(ctx, args(now)...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// Close releases the store's prepared statements. It does not close the
// *sql.DB, which belongs to the caller. The store must not be used after.
func (s *Store) Close() error {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	for q, st := range s.stmts {
		_ = st.Close()
		delete(s.stmts, q)
	}
	return nil
}
