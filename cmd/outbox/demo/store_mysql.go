package demo

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	outbox "github.com/txoutbox/txoutbox/core"
	mysqlstore "github.com/txoutbox/txoutbox/stores/mysql"
)

// openMySQL prepares the demo in the MySQL or MariaDB database at raw (a
// mysql:// URL or a go-sql-driver DSN): the outbox table, with its lock and
// migrations tables, and table_users, all dropped at the end.
func openMySQL(ctx context.Context, raw, table string, keys []string) (*store, error) {
	mcfg, err := backend.MySQLConfig(raw)
	if err != nil {
		return nil, invalid("--store %s: %v; %s", backend.Redact(raw), err, storeExamples)
	}
	if mcfg.DBName == "" {
		return nil, invalid("--store %s: no database; name it as the URL's path (mysql://user:password@host:3306/app)", backend.Redact(raw))
	}
	mcfg.InterpolateParams = true
	if mcfg.Timeout == 0 {
		mcfg.Timeout = 10 * time.Second
	}
	connector, err := mysql.NewConnector(mcfg)
	if err != nil {
		return nil, invalid("--store %s: %v", backend.Redact(raw), err)
	}
	db := sql.OpenDB(connector)
	if err := db.PingContext(ctx); err != nil {
		return nil, joinErrors(fmt.Errorf("MySQL or MariaDB at %s does not answer: %w", backend.Redact(raw), err), db.Close)
	}
	st, err := mysqlstore.New(db, mysqlstore.Config{Table: table})
	if err != nil {
		return nil, joinErrors(err, db.Close)
	}
	users := table + "_users"
	drop := func(ctx context.Context) error {
		q := fmt.Sprintf("DROP TABLE IF EXISTS `%s`, `%s`, `%s_lanes`, `%s_relays`, `%s_migrations`", users, table, table, table, table)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("drop the demo's tables %s*: %w", table, err)
		}
		return nil
	}
	fail := func(err error) (*store, error) {
		return nil, joinErrors(err, func() error { return drop(context.WithoutCancel(ctx)) }, db.Close)
	}
	if err := st.Migrate(ctx); err != nil {
		return fail(fmt.Errorf("create the demo's outbox %s: %w", table, err))
	}
	server, err := st.Server(ctx) // "MariaDB 10.11.6": VERSION() tells MariaDB from MySQL
	if err != nil {
		return fail(err)
	}
	create := fmt.Sprintf("CREATE TABLE `%s` (user_id VARCHAR(64) PRIMARY KEY, name VARCHAR(255) NOT NULL, updated_on DATETIME(6) NOT NULL) ENGINE=InnoDB", users)
	insert := fmt.Sprintf("INSERT INTO `%s` (user_id, name, updated_on) VALUES (?, ?, ?)", users)
	if err := createUsers(ctx, db, create, insert, time.Now().UTC(), keys); err != nil {
		return fail(err)
	}
	update := fmt.Sprintf("UPDATE `%s` SET name = ?, updated_on = UTC_TIMESTAMP(6) WHERE user_id = ?", users)
	return &store{
		display:   fmt.Sprintf("%s %s/%s, tables %s* (dropped at the end)", server, mcfg.Addr, mcfg.DBName, table),
		outbox:    st,
		url:       raw,
		relayArgs: []string{"--table", table},
		update: func(ctx context.Context, userID, name string, msg outbox.Message) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, update, name, userID); err != nil {
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
			return joinErrors(drop(ctx), db.Close)
		},
	}, nil
}
