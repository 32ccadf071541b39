// Command sqlx-postgres places an order with sqlx on PostgreSQL (pgx's
// database/sql driver) and writes its order_placed event to the outbox in
// the same transaction: the event exists if and only if the order does. A
// relay in the same process publishes the event to a NATS JetStream
// stream, and the program reads it back, as the service downstream would.
//
//	DATABASE_URL='postgres://app:secret@localhost:5432/app' \
//	NATS_URL=nats://localhost:4222 go run .
//
// It creates the stream (NATS_STREAM, default ORDERS, capturing
// NATS_SUBJECT, default orders.placed) when it does not exist.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// config says where the program's servers are.
type config struct {
	DatabaseURL string // DATABASE_URL: postgres://user:password@host:5432/database
	NATSURL     string // NATS_URL: nats://host:4222
	Stream      string // NATS_STREAM: the stream that keeps the events; default ORDERS
	Subject     string // NATS_SUBJECT: where the events go; default orders.placed
}

func main() {
	cfg := config{
		DatabaseURL: os.Getenv("DATABASE_URL"),
		NATSURL:     cmp.Or(os.Getenv("NATS_URL"), nats.DefaultURL),
		Stream:      cmp.Or(os.Getenv("NATS_STREAM"), "ORDERS"),
		Subject:     cmp.Or(os.Getenv("NATS_SUBJECT"), "orders.placed"),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// Order is the business row.
type Order struct {
	ID         string `db:"id" json:"order_id"`
	Customer   string `db:"customer" json:"customer"`
	TotalCents int64  `db:"total_cents" json:"total_cents"`
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	// The service's database handle: sqlx on pgx's database/sql driver.
	db, err := sqlx.Open("pgx", cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS orders (
	id text PRIMARY KEY, customer text NOT NULL, total_cents bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}

	// The outbox. Its store (what the relay uses) is on a pgx pool;
	// Migrate creates the outbox table, at startup or with `outbox migrate`.
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pgstore.New(pool, pgstore.Config{})
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}

	// The relay: a goroutine of the service here, or the `outbox relay`
	// command beside it.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pub, err := natspub.Connect(ctx, natspub.Connection{URL: cfg.NATSURL}, natspub.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer pub.Close()
	if err := ensureStream(ctx, pub.JetStream(), cfg.Stream, cfg.Subject); err != nil {
		return err
	}
	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{Logger: logger})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() { stopRelay(); <-relayDone }() // finishes what is in flight

	order := Order{ID: fmt.Sprintf("order-%d", time.Now().UnixNano()), Customer: "ada", TotalCents: 4200}
	eventID, err := placeOrder(ctx, db, store, cfg.Subject, order)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "placed %s with its event %s in one transaction\n", order.ID, eventID)

	msg, err := awaitEvent(ctx, pub.JetStream(), cfg.Stream, cfg.Subject, eventID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "received from NATS subject %s: %s\n", msg.Subject(), msg.Data())
	return nil
}

// placeOrder writes order and its event in one sqlx transaction, and
// returns the event's ID.
func placeOrder(ctx context.Context, db *sqlx.DB, store *pgstore.Store, subject string, order Order) (string, error) {
	payload, err := json.Marshal(order)
	if err != nil {
		return "", err
	}
	event := outbox.Message{ID: outbox.NewID(), Topic: subject, Key: order.ID, Payload: payload}

	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback() // a no-op after Commit
	if _, err := tx.NamedExecContext(ctx, `INSERT INTO orders (id, customer, total_cents) VALUES (:id, :customer, :total_cents)`, order); err != nil {
		return "", err
	}
	// *sqlx.Tx embeds the *sql.Tx that EnqueueSQL writes in.
	if err := store.EnqueueSQL(ctx, tx.Tx, event); err != nil {
		return "", err
	}
	return event.ID, tx.Commit() // the event exists if and only if this commits
}

// ensureStream creates the stream when it does not exist. In production
// an operator creates it, with the limits and replicas it needs.
func ensureStream(ctx context.Context, js jetstream.JetStream, stream, subject string) error {
	_, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}})
	}
	return err
}

// awaitEvent reads the stream's subject from its start until the event with
// this ID arrives (the Nats-Msg-Id header), or ctx ends.
func awaitEvent(ctx context.Context, js jetstream.JetStream, stream, subject, id string) (jetstream.Msg, error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("event %s did not arrive on %s: %w", id, subject, err)
		}
		if msg.Headers().Get(nats.MsgIdHdr) == id {
			return msg, nil
		}
	}
}
