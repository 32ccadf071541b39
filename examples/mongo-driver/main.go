// Command mongo-driver places an order with the official MongoDB driver and
// writes its order_placed event to the outbox in the same multi-document
// transaction: the event exists if and only if the order does. A relay in
// the same process publishes the event to a NATS JetStream stream, and the
// program reads it back, as the service downstream would.
//
//	MONGODB_URI='mongodb://localhost:27017/?replicaSet=rs0' \
//	NATS_URL=nats://localhost:4222 go run .
//
// MongoDB has multi-document transactions only on a replica set or a
// sharded cluster (a one-node replica set will do: mongod --replSet rs0,
// then rs.initiate()). On a standalone mongod or FerretDB the program stops
// before writing, saying so: an outbox without a transaction would not be
// atomic with the order. It creates the stream (NATS_STREAM, default
// ORDERS, capturing NATS_SUBJECT, default orders.placed) when it does not
// exist.
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	outbox "github.com/txoutbox/txoutbox/core"
	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
)

// config says where the program's servers are.
type config struct {
	MongoURI string // MONGODB_URI: mongodb://host:27017/?replicaSet=rs0
	Database string // MONGODB_DATABASE: the service's database; default shop
	NATSURL  string // NATS_URL: nats://host:4222
	Stream   string // NATS_STREAM: the stream that keeps the events; default ORDERS
	Subject  string // NATS_SUBJECT: where the events go; default orders.placed
}

func main() {
	cfg := config{
		MongoURI: cmp.Or(os.Getenv("MONGODB_URI"), "mongodb://localhost:27017"),
		Database: cmp.Or(os.Getenv("MONGODB_DATABASE"), "shop"),
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

// order is the business document, and the event's payload.
type order struct {
	ID         string `bson:"_id" json:"order_id"`
	Customer   string `bson:"customer" json:"customer"`
	TotalCents int64  `bson:"total_cents" json:"total_cents"`
}

// errNoTransactions is what run returns on a deployment without
// multi-document transactions.
var errNoTransactions = errors.New("MongoDB has multi-document transactions only on a replica set or a sharded cluster " +
	"(a one-node replica set will do: mongod --replSet rs0, then rs.initiate())")

func run(ctx context.Context, cfg config, out io.Writer) error {
	client, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoURI))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.WithoutCancel(ctx))
	if err := requireTransactions(ctx, client); err != nil {
		return err
	}
	db := client.Database(cfg.Database)

	// Collections and indexes first: MongoDB cannot create them inside a
	// transaction. Migrate creates the outbox's, at startup or with
	// `outbox migrate`.
	store, err := mongostore.New(client, mongostore.Config{Database: cfg.Database})
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	if err := db.CreateCollection(ctx, "orders"); err != nil && !isNamespaceExists(err) {
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

	o := order{ID: fmt.Sprintf("order-%d", time.Now().UnixNano()), Customer: "ada", TotalCents: 4200}
	eventID, err := placeOrder(ctx, client, db.Collection("orders"), store, cfg.Subject, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "placed %s with its event %s in one transaction\n", o.ID, eventID)

	msg, err := awaitEvent(ctx, pub.JetStream(), cfg.Stream, cfg.Subject, eventID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "received from NATS subject %s: %s\n", msg.Subject(), msg.Data())
	return nil
}

// placeOrder inserts o and its event in one transaction, and returns the
// event's ID.
func placeOrder(ctx context.Context, client *mongo.Client, orders *mongo.Collection, store *mongostore.Store, subject string, o order) (string, error) {
	payload, err := json.Marshal(o)
	if err != nil {
		return "", err
	}
	// The ID is set here, so that a retried transaction writes the same
	// event again rather than a second one.
	event := outbox.Message{ID: outbox.NewID(), Topic: subject, Key: o.ID, Payload: payload}

	sess, err := client.StartSession()
	if err != nil {
		return "", err
	}
	defer sess.EndSession(ctx)
	// WithTransaction commits, or aborts and retries the function on a
	// transient error (a write conflict): return every error to it, and
	// keep the function safe to run again.
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		if _, err := orders.InsertOne(ctx, o); err != nil {
			return nil, err
		}
		return nil, store.Enqueue(ctx, event) // ctx carries the transaction
	})
	return event.ID, err
}

// requireTransactions returns errNoTransactions unless the deployment is a
// replica set or a sharded cluster.
func requireTransactions(ctx context.Context, client *mongo.Client) error {
	var hello struct {
		SetName string `bson:"setName"`
		Msg     string `bson:"msg"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return err
	}
	if hello.SetName == "" && hello.Msg != "isdbgrid" {
		return errNoTransactions
	}
	return nil
}

// isNamespaceExists reports whether err says the collection exists.
func isNamespaceExists(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == 48
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
