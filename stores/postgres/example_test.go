package pgstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// The classic case: a service renames a user and records the event in the
// same transaction. The event exists if and only if the rename commits; a
// relay then publishes it (here to the in-memory broker).
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL")) // postgres://app@db:5432/app
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	store, err := pgstore.New(pool, pgstore.Config{Table: "outbox"})
	if err != nil {
		panic(err)
	}
	if err := store.Migrate(ctx); err != nil { // creates the outbox table; or `outbox migrate`
		panic(err)
	}
	_, err = pool.Exec(ctx, `CREATE TABLE users (user_id text PRIMARY KEY, name text NOT NULL, updated_on timestamptz NOT NULL);
INSERT INTO users VALUES ('user-42', 'Ada', '2024-01-01')`)
	if err != nil {
		panic(err)
	}

	// The service: one transaction for the business write and its event.
	rename := func(ctx context.Context, userID, name string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE users SET name = $1, updated_on = now() WHERE user_id = $2`, name, userID)
			if err != nil {
				return err
			}
			payload, err := json.Marshal(map[string]string{"user_id": userID, "name": name})
			if err != nil {
				return err
			}
			return store.Enqueue(ctx, tx, outbox.Message{Topic: "user_updated", Key: userID, Payload: payload})
		}) // commits, or rolls back on error: the event exists if and only if the rename does
	}
	if err := rename(ctx, "user-42", "Ada Lovelace"); err != nil {
		panic(err)
	}

	var name string
	var updatedToday bool
	err = pool.QueryRow(ctx, `SELECT name, updated_on > now() - interval '1 hour' FROM users WHERE user_id = 'user-42'`).Scan(&name, &updatedToday)
	if err != nil {
		panic(err)
	}
	fmt.Println("users:", name, updatedToday)

	// The relay: here a goroutine of the same process.
	broker := memory.NewPublisher(memory.PublisherConfig{})
	relay, err := outbox.NewRelay(store, broker, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(runCtx) }()
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := broker.WaitFor(waitCtx, 1); err != nil {
		panic(err)
	}
	stop()
	<-done
	for _, m := range broker.Messages() {
		fmt.Println("published:", m.Topic, m.Key, string(m.Payload))
	}
	// Output:
	// users: Ada Lovelace true
	// published: user_updated user-42 {"name":"Ada Lovelace","user_id":"user-42"}
}

// Code on database/sql (pgx's stdlib driver, lib/pq, and the ORMs and query
// builders on top of them) writes its events with EnqueueSQL, in the
// *sql.Tx of the business change. The store itself, which the relay uses,
// is still built on a pgxpool.Pool.
func ExampleStore_EnqueueSQL() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL")) // or "postgres" with lib/pq
	if err != nil {
		panic(err)
	}
	defer db.Close()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	store, err := pgstore.New(pool, pgstore.Config{Table: "order_events"})
	if err != nil {
		panic(err)
	}
	if err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (order_id text PRIMARY KEY, total_cents bigint NOT NULL)`); err != nil {
		panic(err)
	}

	placeOrder := func(ctx context.Context, orderID string, totalCents int64) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // a no-op after Commit
		if _, err := tx.ExecContext(ctx, `INSERT INTO orders (order_id, total_cents) VALUES ($1, $2)`, orderID, totalCents); err != nil {
			return err
		}
		payload, err := json.Marshal(map[string]any{"order_id": orderID, "total_cents": totalCents})
		if err != nil {
			return err
		}
		if err := store.EnqueueSQL(ctx, tx, outbox.Message{Topic: "order_placed", Key: orderID, Payload: payload}); err != nil {
			return err
		}
		return tx.Commit() // the event exists if and only if the order does
	}
	if err := placeOrder(ctx, "order-7", 4200); err != nil {
		panic(err)
	}

	stats, err := store.Stats(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("events waiting for the relay:", stats.Pending)
	// Output: events waiting for the relay: 1
}
