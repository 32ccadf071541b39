package sqlitestore

import (
	"context"
	"database/sql/driver"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The connections of a database from Open are the driver's, wrapped to do
// two things for the other users of the same file in this process:
//
//   - A write transaction queues for the file's write lock in Go before its
//     BEGIN takes SQLite's (see fileHub).
//   - SQLite's hooks tell which tables a transaction inserted into; once it
//     has committed, the listeners of those tables are woken. The commit
//     hook runs before the commit is visible to other connections, so the
//     wake-up waits until Commit (or the Exec that committed) returns.

// watchingConnector opens the driver's connections and wraps them.
type watchingConnector struct {
	driver.Connector
	// queue says whether BEGIN takes the write lock (_txlock=immediate or
	// exclusive), so that BeginTx can queue for it.
	queue bool
}

func newWatchingConnector(dsn string) (*watchingConnector, error) {
	base, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	c := &watchingConnector{Connector: base}
	if _, query, ok := strings.Cut(dsn, "?"); ok {
		if q, err := url.ParseQuery(query); err == nil {
			mode := strings.ToLower(q.Get("_txlock"))
			c.queue = mode == "immediate" || mode == "exclusive"
		}
	}
	return c, nil
}

func (c *watchingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	file, busy, err := connSettings(ctx, conn)
	hr, ok := conn.(sqlite.HookRegisterer)
	if err != nil || file == "" || !ok { // no file (in-memory database): nothing to share
		return conn, nil
	}
	w := &watchedConn{Conn: conn, hub: hubFor(file), queue: c.queue, busyTimeout: busy}
	hr.RegisterPreUpdateHook(w.preUpdate)
	hr.RegisterCommitHook(w.commitHook)
	hr.RegisterRollbackHook(w.rollbackHook)
	return w, nil
}

// connSettings returns the file of a connection's main database and its
// busy timeout.
func connSettings(ctx context.Context, conn driver.Conn) (file string, busy time.Duration, err error) {
	qc, ok := conn.(driver.QueryerContext)
	if !ok {
		return "", 0, nil
	}
	rows, err := qc.QueryContext(ctx,
		"SELECT file, (SELECT timeout FROM pragma_busy_timeout) FROM pragma_database_list WHERE name = 'main'", nil)
	if err != nil {
		return "", 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 2)
	if err := rows.Next(dest); err != nil {
		if err == io.EOF {
			return "", 0, nil
		}
		return "", 0, err
	}
	switch v := dest[0].(type) {
	case string:
		file = v
	case []byte:
		file = string(v)
	}
	if ms, ok := dest[1].(int64); ok {
		busy = time.Duration(ms) * time.Millisecond
	}
	return file, busy, nil
}

// watchedConn is a driver connection of a database from Open. It offers
// the interfaces of the driver's connection that database/sql uses, and
// Unwrap for code that needs the driver's own (through sql.Conn.Raw).
type watchedConn struct {
	driver.Conn
	hub         *fileHub
	queue       bool
	busyTimeout time.Duration

	mu        sync.Mutex
	inserted  []string // tables the open transaction inserted into
	committed []string // tables of commits not yet announced
}

var (
	_ driver.ConnBeginTx                = (*watchedConn)(nil)
	_ driver.ConnPrepareContext         = (*watchedConn)(nil)
	_ driver.ExecerContext              = (*watchedConn)(nil)
	_ driver.QueryerContext             = (*watchedConn)(nil)
	_ driver.Pinger                     = (*watchedConn)(nil)
	_ driver.SessionResetter            = (*watchedConn)(nil)
	_ driver.Validator                  = (*watchedConn)(nil)
	_ sqlite.HookRegisterer             = (*watchedConn)(nil)
	_ interface{ Unwrap() driver.Conn } = (*watchedConn)(nil)
)

// Unwrap returns the driver's connection.
func (c *watchedConn) Unwrap() driver.Conn { return c.Conn }

func (c *watchedConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *watchedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	queued := c.queue && !opts.ReadOnly
	if queued {
		if err := c.hub.acquire(ctx, c.busyTimeout); err != nil {
			return nil, err
		}
	}
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		if queued {
			c.hub.release()
		}
		return nil, err
	}
	return &watchedTx{Tx: tx, c: c, queued: queued}, nil
}

func (c *watchedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c *watchedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	c.announce() // the statement may have committed (autocommit, or COMMIT)
	return res, err
}

func (c *watchedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *watchedConn) Ping(ctx context.Context) error {
	return c.Conn.(driver.Pinger).Ping(ctx)
}

func (c *watchedConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

// IsValid is called whenever database/sql returns the connection to its
// pool, after anything that may have committed.
func (c *watchedConn) IsValid() bool {
	c.announce()
	return c.Conn.(driver.Validator).IsValid()
}

// RegisterPreUpdateHook, RegisterCommitHook and RegisterRollbackHook are
// taken by the wake-ups; registering others would silently disable them.
func (c *watchedConn) RegisterPreUpdateHook(fn sqlite.PreUpdateHookFn) {
	c.Conn.(sqlite.HookRegisterer).RegisterPreUpdateHook(fn)
}

func (c *watchedConn) RegisterCommitHook(fn sqlite.CommitHookFn) {
	c.Conn.(sqlite.HookRegisterer).RegisterCommitHook(fn)
}

func (c *watchedConn) RegisterRollbackHook(fn sqlite.RollbackHookFn) {
	c.Conn.(sqlite.HookRegisterer).RegisterRollbackHook(fn)
}

func (c *watchedConn) preUpdate(d sqlite.SQLitePreUpdateData) {
	if d.Op != sqlite3.SQLITE_INSERT || d.DatabaseName != "main" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inserted = addTable(c.inserted, d.TableName)
}

func (c *watchedConn) commitHook() int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.inserted {
		c.committed = addTable(c.committed, t)
	}
	c.inserted = c.inserted[:0]
	return 0 // go on with the commit
}

func (c *watchedConn) rollbackHook() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inserted = c.inserted[:0]
}

// announce wakes the listeners of the tables of finished commits.
func (c *watchedConn) announce() {
	c.mu.Lock()
	tables := c.committed
	c.committed = nil
	c.mu.Unlock()
	if len(tables) > 0 {
		c.hub.committed(tables)
	}
}

func addTable(tables []string, t string) []string {
	for _, have := range tables {
		if have == t {
			return tables
		}
	}
	return append(tables, t)
}

// watchedTx ends a transaction: it leaves the write lock queue and
// announces the commit once SQLite has made it visible.
type watchedTx struct {
	driver.Tx
	c      *watchedConn
	queued bool
	once   sync.Once
}

func (t *watchedTx) Commit() error {
	err := t.Tx.Commit()
	t.end()
	t.c.announce()
	return err
}

func (t *watchedTx) Rollback() error {
	err := t.Tx.Rollback()
	t.end()
	return err
}

func (t *watchedTx) end() {
	t.once.Do(func() {
		if t.queued {
			t.c.hub.release()
		}
	})
}
