package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// A service writes an event in its transaction; a relay publishes it. The
// in-memory store and broker stand in for a database and Kafka or NATS.
func Example() {
	ctx := context.Background()
	store := memory.NewStore(memory.StoreConfig{})
	broker := memory.NewPublisher(memory.PublisherConfig{})

	// In the service, inside its own transaction:
	tx := store.Begin()
	err := store.Enqueue(ctx, tx, outbox.Message{Topic: "user.updated", Key: "user-42", Payload: []byte(`{"name":"Ada"}`)})
	if err != nil {
		_ = tx.Rollback()
		panic(err)
	}
	_ = tx.Commit() // the event exists if and only if this commit succeeds

	// In the relay, a goroutine of the service or the `outbox relay` command:
	relay, err := outbox.NewRelay(store, broker, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(runCtx) }()

	_ = broker.WaitFor(ctx, 1)
	stop()
	<-done
	for _, m := range broker.Messages() {
		fmt.Println(m.Topic, m.Key, string(m.Payload))
	}
	// Output: user.updated user-42 {"name":"Ada"}
}

// Enqueue rejects an invalid message before it touches the transaction.
func ExamplePrepare() {
	msgs := []outbox.Message{{Topic: "orders"}, {Key: "order-7"}}
	err := outbox.Prepare(msgs, outbox.Limits{})
	fmt.Println(errors.Is(err, outbox.ErrInvalidMessage), errors.Is(err, outbox.ErrMissingTopic))
	var ve *outbox.ValidationError
	if errors.As(err, &ve) {
		fmt.Println("message", ve.Index)
	}
	// Output:
	// true true
	// message 1
}
