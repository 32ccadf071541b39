// Command sqlc-pgx places an order through sqlc-style queries on pgx and
// writes its order_placed event to the outbox in the same pgx transaction:
// the event exists if and only if the order does. A relay in the same
// process publishes the event to Kafka, and the program reads it back from
// the topic, as the service downstream would.
//
//	DATABASE_URL='postgres://app:secret@localhost:5432/app' \
//	KAFKA_BROKERS=localhost:9092 KAFKA_TOPIC=orders.placed go run .
//
// queries.go has the shape sqlc generates from query.sql and schema.sql
// (see sqlc.yaml). The topic must exist (or the brokers create topics on
// first use).
package main

import (
	"cmp"
	"context"
	_ "embed"
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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// schema creates the business table (a migration tool's job in a service).
//
//go:embed schema.sql
var schema string

// config says where the program's servers are.
type config struct {
	DatabaseURL  string   // DATABASE_URL: postgres://user:password@host:5432/database
	KafkaBrokers []string // KAFKA_BROKERS: host:port,host:port
	Topic        string   // KAFKA_TOPIC: where the events go; default orders.placed
}

func main() {
	cfg := config{
		DatabaseURL:  os.Getenv("DATABASE_URL"),
		KafkaBrokers: strings.Split(cmp.Or(os.Getenv("KAFKA_BROKERS"), "localhost:9092"), ","),
		Topic:        cmp.Or(os.Getenv("KAFKA_TOPIC"), "orders.placed"),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// orderPlaced is the event's payload.
type orderPlaced struct {
	OrderID    string    `json:"order_id"`
	Customer   string    `json:"customer"`
	TotalCents int64     `json:"total_cents"`
	PlacedAt   time.Time `json:"placed_at"`
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	// One pgx pool for the service's queries and the outbox store.
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, schema); err != nil {
		return err
	}
	queries := New(pool)
	store, err := pgstore.New(pool, pgstore.Config{})
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil { // the outbox table; or `outbox migrate`
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

	params := CreateOrderParams{ID: fmt.Sprintf("order-%d", time.Now().UnixNano()), Customer: "ada", TotalCents: 4200}
	eventID, err := placeOrder(ctx, pool, queries, store, cfg.Topic, params)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "placed %s with its event %s in one transaction\n", params.ID, eventID)

	rec, err := awaitEvent(ctx, cfg.KafkaBrokers, cfg.Topic, eventID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "received from Kafka topic %s, key %s: %s\n", rec.Topic, rec.Key, rec.Value)
	return nil
}

// placeOrder creates the order and its event in one pgx transaction, and
// returns the event's ID.
func placeOrder(ctx context.Context, pool *pgxpool.Pool, queries *Queries, store *pgstore.Store, topic string, params CreateOrderParams) (string, error) {
	eventID := outbox.NewID()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		order, err := queries.WithTx(tx).CreateOrder(ctx, params)
		if err != nil {
			return err
		}
		payload, err := json.Marshal(orderPlaced{OrderID: order.ID, Customer: order.Customer, TotalCents: order.TotalCents, PlacedAt: order.CreatedAt.Time})
		if err != nil {
			return err
		}
		// The same tx as the queries': the event commits with the order.
		return store.Enqueue(ctx, tx, outbox.Message{ID: eventID, Topic: topic, Key: order.ID, Payload: payload})
	}) // commits, or rolls back when the function fails: both or neither
	return eventID, err
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
