package demo

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// openSQLite opens the SQLite database at path. With an empty table it is
// the demo's own database (tables outbox and users); otherwise the tables
// are table and table_users, dropped at the end.
func openSQLite(ctx context.Context, path, table string, keys []string) (*store, error) {
	own := table == ""
	users := table + "_users"
	if own {
		users = "users"
	}
	dsn := sqlitestore.DSN(path)
	if own {
		dsn = temporaryDSN(path)
	}
	db, err := sqlitestore.OpenDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("open the SQLite database %s: %w", path, err)
	}
	st, err := sqlitestore.New(db, sqlitestore.Config{Table: table})
	if err != nil {
		return nil, joinErrors(err, db.Close)
	}
	if err := st.Migrate(ctx); err != nil {
		return nil, joinErrors(fmt.Errorf("create the outbox in %s: %w", path, err), st.Close, db.Close)
	}
	drop := func(ctx context.Context) error {
		if own {
			return nil // the temporary directory goes as a whole
		}
		for _, t := range []string{users, st.Table(), st.Table() + "_lanes", st.Table() + "_relays", st.Table() + "_migrations"} {
			if _, err := db.ExecContext(ctx, fmt.Sprintf(`DROP TABLE IF EXISTS "%s"`, t)); err != nil {
				return fmt.Errorf("drop the demo's table %s: %w", t, err)
			}
		}
		return nil
	}
	create := fmt.Sprintf(`CREATE TABLE "%s" (user_id TEXT PRIMARY KEY, name TEXT NOT NULL, updated_on INTEGER NOT NULL) STRICT`, users)
	insert := fmt.Sprintf(`INSERT INTO "%s" (user_id, name, updated_on) VALUES (?, ?, ?)`, users)
	if err := createUsers(ctx, db, create, insert, time.Now().UnixMicro(), keys); err != nil {
		return nil, joinErrors(err, func() error { return drop(context.WithoutCancel(ctx)) }, st.Close, db.Close)
	}
	update := fmt.Sprintf(`UPDATE "%s" SET name = ?, updated_on = ? WHERE user_id = ?`, users)
	display := "SQLite " + path
	if own {
		display += " (embedded, temporary)"
	} else {
		display += ", tables " + st.Table() + " and " + users + " (dropped at the end)"
	}
	var relayArgs []string
	if !own {
		relayArgs = []string{"--table", st.Table()}
	}
	return &store{
		display:   display,
		outbox:    st,
		url:       sqliteURL(path),
		relayArgs: relayArgs,
		update: func(ctx context.Context, userID, name string, msg outbox.Message) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, update, name, time.Now().UnixMicro(), userID); err != nil {
				_ = tx.Rollback()
				return err
			}
			if err := st.Enqueue(ctx, tx, msg); err != nil {
				_ = tx.Rollback()
				return err
			}
			if err := tx.Commit(); err != nil {
				return &commitError{err}
			}
			return nil
		},
		close: func(ctx context.Context) error {
			return joinErrors(drop(ctx), st.Close, db.Close)
		},
	}, nil
}

// createUsers runs create (the users table) and then insert (with the
// arguments user id, name and now) once per key, through database/sql
// (SQLite and MySQL).
func createUsers(ctx context.Context, db *sql.DB, create, insert string, now any, keys []string) error {
	if _, err := db.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("create the demo's users table: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for i, k := range keys {
		if _, err := tx.ExecContext(ctx, insert, k, userName(i, 0), now); err != nil {
			return fmt.Errorf("add the demo's users: %w", err)
		}
	}
	return tx.Commit()
}

// temporaryDSN is the DSN of the demo's own, temporary database:
// sqlitestore's, with synchronous=NORMAL, which spares an fsync per commit
// (several times the write rate) and stays safe against the crashes the
// demo inflicts (processes, not power), and a longer busy timeout, so that
// a writer waits out a stall of a loaded machine instead of failing.
func temporaryDSN(path string) string {
	dsn := sqlitestore.DSN(path)
	dsn = strings.Replace(dsn, "_synchronous=FULL", "_synchronous=NORMAL", 1)
	return strings.Replace(dsn, fmt.Sprintf("_busy_timeout=%d", sqlitestore.DefaultBusyTimeoutMillis), "_busy_timeout=30000", 1)
}
