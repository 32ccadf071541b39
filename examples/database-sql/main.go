// Command database-sql places an order with plain database/sql on
// PostgreSQL and writes its order_placed event to the outbox in the same
// *sql.Tx: the event exists if and only if the order does. A relay in the
// same process publishes the event to Kafka, and the program reads it back
// from the topic, as the service downstream would.
//
//	DATABASE_URL='postgres://app:secret@localhost:5432/app' \
//	KAFKA_BROKERS=localhost:9092 KAFKA_TOPIC=orders.placed go run .
//
// The driver is pgx's stdlib ("pgx"); DATABASE_DRIVER=postgres uses lib/pq
// instead, with the same code. The topic must exist (or the brokers create
// topics on first use).
package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	_ "github.com/lib/pq"              // the database/sql driver "postgres"
	"github.com/twmb/franz-go/pkg/kgo"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// config says where the program's servers are.
type config struct {
	DatabaseURL    string   // DATABASE_URL: postgres://user:password@host:5432/database
	DatabaseDriver string   // DATABASE_DRIVER: pgx (default) or postgres (lib/pq)
	KafkaBrokers   []string // KAFKA_BROKERS: host:port,host:port
	Topic          string   // KAFKA_TOPIC: where the events go; default orders.placed
}

func main() {
	cfg := config{
		DatabaseURL:    os.Getenv("DATABASE_URL"),
		DatabaseDriver: cmp.Or(os.Getenv("DATABASE_DRIVER"), "pgx"),
		KafkaBrokers:   strings.Split(cmp.Or(os.Getenv("KAFKA_BROKERS"), "localhost:9092"), ","),
		Topic:          cmp.Or(os.Getenv("KAFKA_TOPIC"), "orders.placed"),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// orderPlaced is the event's payload.
type orderPlaced struct {
	OrderID    string `json:"order_id"`
	Customer   string `json:"customer"`
	TotalCents int64  `json:"total_cents"`
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	// The service's database handle.
	db, err := sql.Open(cfg.DatabaseDriver, cfg.DatabaseURL)
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
	pub, err := kafkapub.Dial(kafkapub.DialConfig{Brokers: cfg.KafkaBrokers})
	if err != nil {
		return err
	}
	defer pub.Close()
	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() { stopRelay(); <-relayDone }() // finishes what is in flight

	order := orderPlaced{OrderID: fmt.Sprintf("order-%d", time.Now().UnixNano()), Customer: "ada", TotalCents: 4200}
	eventID, err := placeOrder(ctx, db, store, cfg.Topic, order)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "placed %s with its event %s in one transaction\n", order.OrderID, eventID)

	rec, err := awaitEvent(ctx, cfg.KafkaBrokers, cfg.Topic, eventID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "received from Kafka topic %s, key %s: %s\n", rec.Topic, rec.Key, rec.Value)
	return nil
}

// placeOrder writes the order and its event in one transaction, and
// returns the event's ID.
func placeOrder(ctx context.Context, db *sql.DB, store *pgstore.Store, topic string, order orderPlaced) (string, error) {
	payload, err := json.Marshal(order)
	if err != nil {
		return "", err
	}
	event := outbox.Message{ID: outbox.NewID(), Topic: topic, Key: order.OrderID, Payload: payload}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, customer, total_cents) VALUES ($1, $2, $3)`,
		order.OrderID, order.Customer, order.TotalCents); err != nil {
		return "", err
	}
	if err := store.EnqueueSQL(ctx, tx, event); err != nil {
		return "", err
	}
	return event.ID, tx.Commit() // the event exists if and only if this commits
}

// awaitEvent reads topic from its start until the event with this ID
// arrives (Kafka's outbox-id header), or ctx ends.
func awaitEvent(ctx context.Context, brokers []string, topic, id string) (*kgo.Record, error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	for {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("event %s did not arrive on topic %s: %w", id, topic, ctx.Err())
		}
		if err := fetches.Err(); err != nil {
			return nil, fmt.Errorf("reading topic %s: %w", topic, err)
		}
		for _, rec := range fetches.Records() {
			for _, h := range rec.Headers {
				if h.Key == kafkapub.IDHeader && string(h.Value) == id {
					return rec, nil
				}
			}
		}
	}
}
