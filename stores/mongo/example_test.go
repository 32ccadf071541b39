package mongostore_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
)

// The classic case: a service renames a user and records a user_updated
// event in the same transaction. The event exists if and only if the
// rename commits; a relay then publishes it (here to the in-memory broker).
// It needs a replica set (or a sharded cluster): MongoDB has transactions
// nowhere else.
func Example() {
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("MONGODB_URI"))) // mongodb://db1,db2,db3/?replicaSet=rs0
	if err != nil {
		panic(err)
	}
	defer client.Disconnect(ctx)
	dbName := cmp.Or(os.Getenv("MONGODB_DATABASE"), "app")
	db := client.Database(dbName)

	store, err := mongostore.New(client, mongostore.Config{Database: dbName})
	if err != nil {
		panic(err)
	}
	// Collections and indexes first: MongoDB cannot create them inside a
	// transaction.
	if err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	if err := db.CreateCollection(ctx, "users"); err != nil {
		panic(err)
	}
	users := db.Collection("users")
	_, err = users.InsertOne(ctx, bson.D{{Key: "_id", Value: "user-42"}, {Key: "name", Value: "Ada"},
		{Key: "updated_on", Value: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}})
	if err != nil {
		panic(err)
	}

	// The service: one transaction for the business write and its event.
	rename := func(ctx context.Context, userID, name string) error {
		payload, err := json.Marshal(map[string]string{"user_id": userID, "name": name})
		if err != nil {
			return err
		}
		events := []outbox.Message{{Topic: "user_updated", Key: userID, Payload: payload}}

		sess, err := client.StartSession()
		if err != nil {
			return err
		}
		defer sess.EndSession(ctx)
		// WithTransaction starts a transaction, calls the function with a
		// context that carries it, and commits. When a command or the
		// commit fails with an error labelled TransientTransactionError
		// (typically a WriteConflict: another transaction wrote this user,
		// or enqueued for the same key, and committed first), it aborts and
		// calls the function again in a new transaction, after a short
		// backoff, for up to 120 seconds; a commit whose outcome is unknown
		// (UnknownTransactionCommitResult) is retried alone. An aborted
		// attempt leaves nothing behind, so the rename and its event are
		// written once. Hence the two rules of the callback: return every
		// error (WithTransaction reads the labels inside), and be safe to
		// run again. Enqueue fills in the events' IDs on the first attempt
		// and later attempts reuse them, because events is the same slice.
		_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
			_, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: userID}}, bson.D{
				{Key: "$set", Value: bson.D{{Key: "name", Value: name}}},
				{Key: "$currentDate", Value: bson.D{{Key: "updated_on", Value: true}}},
			})
			if err != nil {
				return nil, err
			}
			return nil, store.Enqueue(ctx, events...) // ctx carries the transaction
		})
		return err
	}
	if err := rename(ctx, "user-42", "Ada Lovelace"); err != nil {
		panic(err)
	}

	var user struct {
		Name      string    `bson:"name"`
		UpdatedOn time.Time `bson:"updated_on"`
	}
	if err := users.FindOne(ctx, bson.D{{Key: "_id", Value: "user-42"}}).Decode(&user); err != nil {
		panic(err)
	}
	fmt.Println("users:", user.Name, time.Since(user.UpdatedOn) < time.Hour)

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

// On a deployment without transactions (a standalone mongod, FerretDB),
// Enqueue refuses to write unless the store allows it, and then the event
// is not atomic with the business write.
func ExampleConfig_allowNonTransactional() {
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("MONGODB_URI"))) // mongodb://db:27017
	if err != nil {
		panic(err)
	}
	defer client.Disconnect(ctx)
	dbName := cmp.Or(os.Getenv("MONGODB_DATABASE"), "app")

	strict, err := mongostore.New(client, mongostore.Config{Database: dbName, Collection: "user_events"})
	if err != nil {
		panic(err)
	}
	if err := strict.Migrate(ctx); err != nil {
		panic(err)
	}
	err = strict.Enqueue(ctx, outbox.Message{Topic: "user_updated", Key: "user-42"})
	fmt.Println("without a transaction:", errors.Is(err, mongostore.ErrNoTransaction))

	lenient, err := mongostore.New(client, mongostore.Config{Database: dbName, Collection: "user_events", AllowNonTransactional: true})
	if err != nil {
		panic(err)
	}
	err = lenient.Enqueue(ctx, outbox.Message{Topic: "user_updated", Key: "user-42", Payload: []byte(`{"name":"Ada"}`)})
	fmt.Println("allowed:", err)

	stats, err := lenient.Stats(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("pending:", stats.Pending, "lanes:", stats.Lanes)
	// Output:
	// without a transaction: true
	// allowed: <nil>
	// pending: 1 lanes: 256
}
