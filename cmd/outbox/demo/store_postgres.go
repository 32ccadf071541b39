package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// openPostgres prepares the demo in a schema of its own on the PostgreSQL
// database at raw: the outbox (pgstore's default table) and a users table,
// all dropped with the schema at the end.
func openPostgres(ctx context.Context, raw, schema string, keys []string) (*store, error) {
	pcfg, err := pgxpool.ParseConfig(raw) // its errors hide the password
	if err != nil {
		return nil, invalid("--store %s: %v; %s", backend.Redact(raw), err, storeExamples)
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "outbox demo"
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, invalid("--store %s: %v", backend.Redact(raw), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL at %s does not answer: %w", backend.Redact(raw), err)
	}
	st, err := pgstore.New(pool, pgstore.Config{Schema: schema})
	if err != nil {
		pool.Close()
		return nil, err
	}
	ident := pgx.Identifier{schema}.Sanitize()
	users := pgx.Identifier{schema, "users"}.Sanitize()
	drop := func(ctx context.Context) error {
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			return fmt.Errorf("drop the demo's schema %s: %w", schema, err)
		}
		return nil
	}
	fail := func(err error) (*store, error) {
		err = joinErrors(err, func() error { return drop(context.WithoutCancel(ctx)) })
		pool.Close()
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		return fail(fmt.Errorf("create the demo's outbox in schema %s: %w", schema, err))
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE "+users+" (user_id text PRIMARY KEY, name text NOT NULL, updated_on timestamptz NOT NULL)"); err != nil {
		return fail(fmt.Errorf("create the demo's users table: %w", err))
	}
	names := make([]string, len(keys))
	for i := range keys {
		names[i] = userName(i, 0)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO "+users+" (user_id, name, updated_on) SELECT u, n, now() FROM unnest($1::text[], $2::text[]) AS t(u, n)", keys, names); err != nil {
		return fail(fmt.Errorf("add the demo's users: %w", err))
	}
	update := "UPDATE " + users + " SET name = $1, updated_on = now() WHERE user_id = $2"
	return &store{
		display:   fmt.Sprintf("PostgreSQL %s, schema %s (dropped at the end)", backend.Redact(raw), schema),
		outbox:    st,
		url:       raw,
		relayArgs: []string{"--schema", schema},
		update: func(ctx context.Context, userID, name string, msg outbox.Message) error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, update, name, userID); err != nil {
				_ = tx.Rollback(ctx)
				return err
			}
			if err := st.Enqueue(ctx, tx, msg); err != nil {
				_ = tx.Rollback(ctx)
				return err
			}
			if err := tx.Commit(ctx); err != nil {
				return &commitError{err}
			}
			return nil
		},
		close: func(ctx context.Context) error {
			err := drop(ctx)
			pool.Close()
			return err
		},
	}, nil
}
