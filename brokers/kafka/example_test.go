package kafkapub_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// A relay moves committed messages from an outbox to Kafka. Here the outbox
// is the in-memory reference store and Kafka is franz-go's in-process fake
// cluster; in a service they are a store adapter and real brokers.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "user.updated"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()

	pub, err := kafkapub.Dial(kafkapub.DialConfig{Brokers: cluster.ListenAddrs()})
	if err != nil {
		panic(err)
	}
	defer pub.Close()

	store := memory.NewStore(memory.StoreConfig{})
	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	relayCtx, stopRelay := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(relayCtx) }()

	// The service writes the message in its own transaction.
	tx := store.Begin()
	msg := outbox.Message{Topic: "user.updated", Key: "42", Payload: []byte(`{"name":"Ada"}`),
		Headers: map[string]string{"content-type": "application/json"}}
	if err := store.Enqueue(ctx, tx, msg); err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}
	relay.Notify()

	// A consumer reads it from Kafka.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.ConsumeTopics("user.updated"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		panic(err)
	}
	defer consumer.Close()
	rec := consumer.PollRecords(ctx, 1).Records()[0]
	fmt.Printf("topic %s, key %s, value %s\n", rec.Topic, rec.Key, rec.Value)
	for _, h := range rec.Headers {
		if h.Key == kafkapub.IDHeader {
			fmt.Printf("header %s: a UUID of %d characters\n", h.Key, len(h.Value))
		} else {
			fmt.Printf("header %s: %s\n", h.Key, h.Value)
		}
	}

	stopRelay()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// topic user.updated, key 42, value {"name":"Ada"}
	// header outbox-id: a UUID of 36 characters
	// header content-type: application/json
}

// ParseURL reads the connection settings of a command line or an
// environment variable.
func ExampleParseURL() {
	cfg, err := kafkapub.ParseURL("kafka://relay:s3cret@kafka-1:9093,kafka-2?tls=true&sasl=scram-sha-512&delivery_timeout=5s")
	if err != nil {
		panic(err)
	}
	fmt.Println(cfg.Brokers, cfg.SASL.Mechanism, cfg.SASL.User, cfg.TLS != nil, cfg.DeliveryTimeout)
	// Output:
	// [kafka-1:9093 kafka-2:9092] scram-sha-512 relay true 5s
}

// New publishes through a client of your own, built with the options Dial
// would use plus yours.
func ExampleNew() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()

	cfg := kafkapub.DialConfig{Brokers: cluster.ListenAddrs()}
	opts, err := cfg.ClientOptions()
	if err != nil {
		panic(err)
	}
	client, err := kgo.NewClient(append(opts, kgo.ClientID("orders-relay"))...)
	if err != nil {
		panic(err)
	}
	defer client.Close() // the publisher leaves it open

	pub, err := kafkapub.New(client, kafkapub.Config{})
	if err != nil {
		panic(err)
	}
	msgs := []outbox.Message{
		{Topic: "orders", Key: "order-7", Payload: []byte("created")},
		{Topic: "orders", Key: "order-7", Payload: []byte("paid")},
		{Topic: "no-such-topic", Key: "order-8", Payload: []byte("created")},
	}
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		panic(err)
	}
	for i, err := range pub.Publish(context.Background(), msgs) {
		fmt.Printf("%s %s: %v\n", msgs[i].Key, msgs[i].Payload, err != nil)
	}
	// Output:
	// order-7 created: false
	// order-7 paid: false
	// order-8 created: true
}
