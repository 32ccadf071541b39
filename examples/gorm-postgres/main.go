// Command gorm-postgres places an order with GORM on PostgreSQL and writes
// its order_placed event to the outbox in the same transaction: the event
// exists if and only if the order does. A relay in the same process
// publishes the event to Kafka, and the program reads it back from the
// topic, as the service downstream would.
//
//	DATABASE_URL='postgres://app:secret@localhost:5432/app' \
//	KAFKA_BROKERS=localhost:9092 KAFKA_TOPIC=orders.placed go run .
//
// The topic must exist (or the brokers create topics on first use).
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
	"github.com/twmb/franz-go/pkg/kgo"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

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

// Order is the business row, a GORM model.
type Order struct {
	ID         string `gorm:"primaryKey"`
	Customer   string
	TotalCents int64
	CreatedAt  time.Time
}

// orderPlaced is the event's payload.
type orderPlaced struct {
	OrderID    string `json:"order_id"`
	Customer   string `json:"customer"`
	TotalCents int64  `json:"total_cents"`
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	// The service's database handle: GORM, on pgx's database/sql driver.
	db, err := gorm.Open(postgres.Open(cfg.DatabaseURL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	if err := db.WithContext(ctx).AutoMigrate(&Order{}); err != nil {
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

	order := Order{ID: fmt.Sprintf("order-%d", time.Now().UnixNano()), Customer: "ada", TotalCents: 4200}
	eventID, err := placeOrder(ctx, db, store, cfg.Topic, order)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "placed %s with its event %s in one transaction\n", order.ID, eventID)

	rec, err := awaitEvent(ctx, cfg.KafkaBrokers, cfg.Topic, eventID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "received from Kafka topic %s, key %s: %s\n", rec.Topic, rec.Key, rec.Value)
	return nil
}

// placeOrder writes order and its event in one GORM transaction, and
// returns the event's ID.
func placeOrder(ctx context.Context, db *gorm.DB, store *pgstore.Store, topic string, order Order) (string, error) {
	payload, err := json.Marshal(orderPlaced{OrderID: order.ID, Customer: order.Customer, TotalCents: order.TotalCents})
	if err != nil {
		return "", err
	}
	event := outbox.Message{ID: outbox.NewID(), Topic: topic, Key: order.ID, Payload: payload}
	err = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&order).Error; err != nil {
			return err
		}
		sqlTx, err := sqlTx(tx)
		if err != nil {
			return err
		}
		return store.EnqueueSQL(ctx, sqlTx, event)
	}) // commits, or rolls back when the function fails: both or neither
	return event.ID, err
}

// sqlTx returns the *sql.Tx under a GORM transaction, which EnqueueSQL
// writes in. GORM keeps it in Statement.ConnPool, wrapped when the
// session prepares statements (gorm.Config.PrepareStmt).
func sqlTx(tx *gorm.DB) (*sql.Tx, error) {
	switch pool := tx.Statement.ConnPool.(type) {
	case *sql.Tx:
		return pool, nil
	case *gorm.PreparedStmtTX:
		if t, ok := pool.Tx.(*sql.Tx); ok {
			return t, nil
		}
	}
	return nil, fmt.Errorf("enqueue needs the *sql.Tx of a GORM transaction (inside db.Transaction), not a %T", tx.Statement.ConnPool)
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
