package natspub_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// A relay moves committed messages from an outbox to JetStream. The stream
// that captures the subjects exists beforehand, with a duplicate window
// that outlives the relay's retries, so that a message published again
// after a lost acknowledgement is stored once.
func Example() {
	ctx := context.Background()
	url := os.Getenv("NATS_URL") // e.g. nats://127.0.0.1:4222
	prefix := fmt.Sprintf("example%d", time.Now().UnixNano())

	pub, err := natspub.Connect(ctx, natspub.Connection{URL: url}, natspub.Config{
		Subject: natspub.SubjectPrefix(prefix), // "orders.created" is published on "<prefix>.orders.created"
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	js := pub.JetStream()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       prefix,
		Subjects:   []string{prefix + ".>"},
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(ctx, prefix) }()

	// The application writes messages in its own transactions (here the
	// in-memory reference store; in a service, stores/postgres and friends).
	store := memory.NewStore(memory.StoreConfig{})
	tx := store.Begin()
	_ = store.Enqueue(ctx, tx,
		outbox.Message{Topic: "orders.created", Key: "order-42", Payload: []byte(`{"id":42}`)},
		outbox.Message{Topic: "orders.paid", Key: "order-42", Payload: []byte(`{"id":42,"amount":"9.90"}`)},
	)
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(rctx) }()

	// A consumer reads the stream.
	consumer, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		msg, err := consumer.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s key=%s %s\n", msg.Subject()[len(prefix)+1:], msg.Headers().Get(natspub.HeaderKey), msg.Data())
	}
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// orders.created key=order-42 {"id":42}
	// orders.paid key=order-42 {"id":42,"amount":"9.90"}
}

// ParseURL reads the broker URLs the outbox command takes.
func ExampleParseURL() {
	conn, cfg, err := natspub.ParseURL("nats://nats-1:4222,nats://nats-2:4222?creds=/etc/outbox/relay.creds&max_in_flight=512&create_streams=true")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(conn.URL)
	fmt.Println(conn.CredsFile)
	fmt.Println(cfg.MaxInFlight, cfg.CreateStreams)
	// Output:
	// nats://nats-1:4222,nats://nats-2:4222
	// /etc/outbox/relay.creds
	// 512 true
}
