package sqlitestore_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// A service renames a user and records the event in the same transaction;
// a relay in the same process publishes it. The in-memory broker stands in
// for Kafka or NATS.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlitestore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	db, err := sqlitestore.Open(filepath.Join(dir, "app.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	store, err := sqlitestore.New(db, sqlitestore.Config{})
	if err != nil {
		panic(err)
	}
	if err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	_, err = db.ExecContext(ctx, `CREATE TABLE users (user_id TEXT PRIMARY KEY, name TEXT NOT NULL, updated_on INTEGER NOT NULL);
		INSERT INTO users VALUES ('user-42', 'Ada', 0)`)
	if err != nil {
		panic(err)
	}

	// The business change and its event, in one transaction.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE users SET name = ?, updated_on = ? WHERE user_id = ?`,
		"Ada Lovelace", time.Now().Unix(), "user-42")
	if err == nil {
		err = store.Enqueue(ctx, tx, outbox.Message{
			Topic:   "user_updated",
			Key:     "user-42",
			Payload: []byte(`{"user_id":"user-42","name":"Ada Lovelace"}`),
		})
	}
	if err != nil {
		_ = tx.Rollback()
		panic(err)
	}
	if err := tx.Commit(); err != nil { // the event exists if and only if this commit succeeds
		panic(err)
	}

	// The relay: a goroutine of the service, or the `outbox relay` command.
	broker := memory.NewPublisher(memory.PublisherConfig{})
	relay, err := outbox.NewRelay(store, broker, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(runCtx) }()
	if err := broker.WaitFor(ctx, 1); err != nil {
		panic(err)
	}
	stop()
	<-done

	for _, m := range broker.Messages() {
		fmt.Println(m.Topic, m.Key, string(m.Payload))
	}
	// Output: user_updated user-42 {"user_id":"user-42","name":"Ada Lovelace"}
}
