package mysqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
	mysqlstore "github.com/txoutbox/txoutbox/stores/mysql"
)

// The classic case: a user is renamed and a user_updated event is written in
// the same transaction. The event exists if and only if the rename commits.
func Example() {
	ctx := context.Background()
	db, err := sql.Open("mysql", os.Getenv("MYSQL_DSN")) // app:secret@tcp(db:3306)/app?interpolateParams=true
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	store, err := mysqlstore.New(db, mysqlstore.Config{Table: "outbox"})
	if err != nil {
		log.Fatal(err)
	}
	// Once, at deploy time or start-up; never inside a transaction.
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	// The business table.
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS users (user_id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, updated_on DATETIME NOT NULL)`); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT IGNORE INTO users VALUES (42, 'Ada Byron', NOW())`); err != nil {
		log.Fatal(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, updated_on = NOW() WHERE user_id = ?`, "Ada Lovelace", 42); err != nil {
		log.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"user_id": 42, "name": "Ada Lovelace"})
	if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "user_updated", Key: "42", Payload: payload}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	stats, err := store.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending events:", stats.Pending)
	// Output: pending events: 1
}

// A writer and a relay in one process. MySQL cannot notify the relay of a
// commit, so the relay polls: every MinPollInterval while there is work,
// doubling up to PollInterval while the outbox is idle. The writer calls
// relay.Notify after each commit so that its events leave at once instead of
// at the next poll.
func Example_relayInProcess() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sql.Open("mysql", os.Getenv("MYSQL_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store, err := mysqlstore.New(db, mysqlstore.Config{Table: "user_events"})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS users (user_id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, updated_on DATETIME NOT NULL)`); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT IGNORE INTO users VALUES (42, 'Ada Byron', NOW())`); err != nil {
		log.Fatal(err)
	}

	// A broker in memory stands in for Kafka or NATS here.
	broker := memory.NewPublisher(memory.PublisherConfig{})
	relay, err := outbox.NewRelay(store, broker, outbox.RelayConfig{
		MinPollInterval: 10 * time.Millisecond, // while busy
		PollInterval:    2 * time.Second,       // the slowest poll, when idle
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error)
	go func() { stopped <- relay.Run(ctx) }()

	rename := func(userID int, name string) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, updated_on = NOW() WHERE user_id = ?`, name, userID); err != nil {
			return err
		}
		payload, _ := json.Marshal(map[string]any{"user_id": userID, "name": name})
		if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "user_updated", Key: fmt.Sprint(userID), Payload: payload}); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		relay.Notify() // after the commit: the relay reads now
		return nil
	}
	for _, name := range []string{"Ada King", "Ada Lovelace"} {
		if err := rename(42, name); err != nil {
			log.Fatal(err)
		}
	}

	if err := broker.WaitFor(ctx, 2); err != nil {
		log.Fatal(err)
	}
	for _, m := range broker.Messages() {
		fmt.Printf("%s key=%s %s\n", m.Topic, m.Key, m.Payload)
	}
	cancel()
	<-stopped
	// Output:
	// user_updated key=42 {"name":"Ada King","user_id":42}
	// user_updated key=42 {"name":"Ada Lovelace","user_id":42}
}
