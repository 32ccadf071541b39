// Command gorm-mysql places an order with GORM on MySQL or MariaDB and
// writes its order_placed event to the outbox in the same transaction: the
// event exists if and only if the order does. A relay in the same process
// publishes the event to a NATS JetStream stream, and the program reads it
// back, as the service downstream would.
//
//	MYSQL_DSN='app:secret@tcp(localhost:3306)/app?parseTime=true&interpolateParams=true' \
//	NATS_URL=nats://localhost:4222 go run .
//
// It creates the stream (NATS_STREAM, default ORDERS, capturing
// NATS_SUBJECT, default orders.placed) when it does not exist.
package main

import (
	"cmp"
	"context"
	"database/sql"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	outbox "github.com/txoutbox/txoutbox/core"
	mysqlstore "github.com/txoutbox/txoutbox/stores/mysql"
)

// config says where the program's servers are.
type config struct {
	MySQLDSN string // MYSQL_DSN: a go-sql-driver DSN, user:password@tcp(host:3306)/database?parseTime=true
	NATSURL  string // NATS_URL: nats://host:4222
	Stream   string // NATS_STREAM: the stream that keeps the events; default ORDERS
	Subject  string // NATS_SUBJECT: where the events go; default orders.placed
}

func main() {
	cfg := config{
		MySQLDSN: os.Getenv("MYSQL_DSN"),
		NATSURL:  cmp.Or(os.Getenv("NATS_URL"), nats.DefaultURL),
		Stream:   cmp.Or(os.Getenv("NATS_STREAM"), "ORDERS"),
		Subject:  cmp.Or(os.Getenv("NATS_SUBJECT"), "orders.placed"),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// Order is the business row, a GORM model.
type Order struct {
	ID         string `gorm:"primaryKey;size:64"`
	Customer   string `gorm:"size:100"`
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
	// The service's database handle: GORM on go-sql-driver/mysql.
	db, err := gorm.Open(mysql.Open(cfg.MySQLDSN), &gorm.Config{Logger: logger.Discard})
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

	// The outbox, on the same *sql.DB. Migrate creates its tables, at
	// startup or with `outbox migrate`, never inside a transaction (DDL
	// commits in MySQL).
	store, err := mysqlstore.New(sqlDB, mysqlstore.Config{})
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
	// MySQL cannot tell the relay about a commit; in the relay's process,
	// Notify makes it read now instead of at its next poll.
	relay.Notify()
	fmt.Fprintf(out, "placed %s with its event %s in one transaction\n", order.ID, eventID)

	msg, err := awaitEvent(ctx, pub.JetStream(), cfg.Stream, cfg.Subject, eventID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "received from NATS subject %s: %s\n", msg.Subject(), msg.Data())
	return nil
}

// placeOrder writes order and its event in one GORM transaction, and
// returns the event's ID.
func placeOrder(ctx context.Context, db *gorm.DB, store *mysqlstore.Store, subject string, order Order) (string, error) {
	payload, err := json.Marshal(orderPlaced{OrderID: order.ID, Customer: order.Customer, TotalCents: order.TotalCents})
	if err != nil {
		return "", err
	}
	event := outbox.Message{ID: outbox.NewID(), Topic: subject, Key: order.ID, Payload: payload}
	err = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&order).Error; err != nil {
			return err
		}
		sqlTx, err := sqlTx(tx)
		if err != nil {
			return err
		}
		return store.Enqueue(ctx, sqlTx, event)
	}) // commits, or rolls back when the function fails: both or neither
	return event.ID, err
}

// sqlTx returns the *sql.Tx under a GORM transaction, which Enqueue writes
// in. GORM keeps it in Statement.ConnPool, wrapped when the session
// prepares statements (gorm.Config.PrepareStmt).
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
