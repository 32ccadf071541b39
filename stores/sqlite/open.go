package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// DefaultBusyTimeoutMillis is the busy_timeout [DSN] sets: how long a
// connection waits for another one's write lock before SQLITE_BUSY.
const DefaultBusyTimeoutMillis = 5000

// DefaultMaxIdleConns is the idle connections [Open] keeps in the pool.
const DefaultMaxIdleConns = 8

// DSN returns the modernc.org/sqlite data source name that [Open] uses for
// the database file at path:
//
//	file:/abs/path/app.db?_busy_timeout=5000&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate
//
// The settings:
//
//   - _busy_timeout=5000: a connection that needs the write lock while
//     another process holds it waits up to 5 s instead of failing at once
//     with SQLITE_BUSY. Keep every write transaction well below it.
//   - _journal_mode=WAL: readers and the writer do not block each other,
//     so a relay's reads never stall the application's writes.
//   - _synchronous=FULL: a commit is on disk before it returns, even in
//     WAL mode. With NORMAL, commits are faster (no fsync per commit) and
//     still safe from application crashes, but the last transactions can
//     vanish after a power loss or OS crash: for an outbox, that means an
//     event already published about a change the database no longer has.
//   - _txlock=immediate: BEGIN takes the write lock at once. A deferred
//     transaction that reads and then writes can fail with SQLITE_BUSY when
//     another writer committed in between, whatever the busy timeout.
//     Read-only transactions (sql.TxOptions{ReadOnly: true}) still begin
//     deferred and take no lock.
//
// To change a setting, edit the string and pass it to [OpenDSN], for
// example strings.Replace(DSN(path), "_synchronous=FULL",
// "_synchronous=NORMAL", 1).
func DSN(path string) string {
	return fmt.Sprintf("file:%s?_busy_timeout=%d&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate",
		uriPath(path), DefaultBusyTimeoutMillis)
}

// uriPath turns a file path into the path of a "file:" URI: absolute, with
// forward slashes, and with the characters a URI gives meaning to escaped.
func uriPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	path = filepath.ToSlash(path)
	if !strings.HasPrefix(path, "/") {
		path = "/" + path // a Windows drive letter: file:/C:/dir/app.db
	}
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Open opens (creating it if needed) the SQLite database file at path, with
// the settings a relay and its writers need (see [DSN]), and checks that it
// can be read. When the file cannot be opened, the error matches
// [outbox.ErrDatabaseMissing] if its directory does not exist and
// [outbox.ErrAccessDenied] if this process may not use the directory or
// the file; otherwise [outbox.ErrUnavailable]. Its connections do two things for the other users of the
// same file in this process: a write transaction (BeginTx, not read-only)
// first queues in Go for the file's write lock, in arrival order; and a
// commit that inserted into an outbox table wakes the relays listening on
// it ([Store.Listen]).
//
// Concurrency: SQLite has one writer at a time. In WAL mode readers run
// beside it, and every write transaction waits for the write lock at
// BEGIN. Keep write transactions short (the store's own are a few
// statements at most). Open keeps up to [DefaultMaxIdleConns] idle connections, so that
// connections and the statements prepared on them are reused, and sets no
// limit on open connections: a limit (db.SetMaxOpenConns) saves memory,
// each connection having its own page cache, but code that holds a
// transaction while it asks the pool for another connection then waits for
// itself. Several processes may open the same file; they must be on one
// machine, since SQLite's locks do not work over network file systems.
//
// The connections are the driver's, wrapped; code that needs the driver's
// own connection (through sql.Conn.Raw) calls its Unwrap method.
func Open(path string) (*sql.DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("%w: sqlitestore.Open needs the path of a database file, got %q (for a DSN use OpenDSN)",
			outbox.ErrInvalidConfig, path)
	}
	db, err := OpenDSN(DSN(path))
	if err != nil {
		return nil, openError(path, err)
	}
	return db, nil
}

// OpenDSN is [Open] with a modernc.org/sqlite data source name of your own,
// for example [DSN] with more parameters appended. Without the settings DSN
// makes, expect SQLITE_BUSY errors under concurrent writes.
func OpenDSN(dsn string) (*sql.DB, error) {
	c, err := newWatchingConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: sqlitestore: %v", outbox.ErrInvalidConfig, err)
	}
	db := sql.OpenDB(c)
	// database/sql keeps 2 idle connections by default and closes the rest:
	// reopening costs a file open, the pragmas and the statements the store
	// prepared on the closed one.
	db.SetMaxIdleConns(DefaultMaxIdleConns)
	if err := db.PingContext(context.Background()); err != nil {
		_ = db.Close()
		return nil, translate("Open", err)
	}
	return db, nil
}
