package main

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// pairMaxMessageBytes is the max.message.bytes of the pairs' topics and the
// batch limit of their publishers.
const pairMaxMessageBytes = 64 << 10

// TestRelaySuitePairs runs the end-to-end relay suite for the store × broker
// pairs that each side's own suites do not join: PostgreSQL and MariaDB into
// a real Apache Kafka (kafkaserver.Brokers: the broker scripts/services
// starts, named by OUTBOX_TEST_KAFKA_BROKERS). The stores' own modules run the
// suite with an in-memory broker, and brokers/kafka with an in-memory store;
// here a real database and a real broker meet.
func TestRelaySuitePairs(t *testing.T) {
	t.Parallel()
	stores := []struct {
		name     string
		open     func(testing.TB) storeFixture
		holdOpen time.Duration
	}{
		// Longer than the suite's default, as in pgstore's own run: the
		// relay keeps delivering while a writer's transaction stays open.
		{"postgres", postgresOutbox, 6 * time.Second},
		{"mysql", func(t testing.TB) storeFixture { return mysqlOutbox(t, false) }, 0},
	}
	for _, s := range stores {
		t.Run(s.name+"_kafka", func(t *testing.T) {
			t.Parallel()
			kafkaserver.Brokers(t) // skip at once without a real broker (fail under OUTBOX_TEST_REQUIRE=kafka)
			conformance.RunRelaySuite(t, conformance.RelayHarness{
				Store: conformance.StoreHarness{New: func(t *testing.T, _ conformance.OutboxOptions) conformance.Outbox {
					f := s.open(t)
					f.migrate(t)
					return f.outbox
				}},
				Broker:   realKafka(),
				HoldOpen: s.holdOpen,
			})
		})
	}
}

// TestTailRelaySuitePairs runs the relay suite with PostgreSQL in the
// log-tailing mode (pgstore Config.Tail: one relay at a time streams from
// a logical replication slot) into the real brokers: Apache Kafka
// (kafkaserver.Brokers) and NATS JetStream (natsserver.URL). stores/postgres
// runs it with the in-memory broker (TestTailRelaySuite).
func TestTailRelaySuitePairs(t *testing.T) {
	t.Parallel()
	for _, b := range []struct {
		name    string
		require func(testing.TB)
		harness func() conformance.PublisherHarness
	}{
		{"kafka", func(t testing.TB) { kafkaserver.Brokers(t) }, realKafka},
		{"nats", func(t testing.TB) { natsserver.URL(t) }, realNATS},
	} {
		t.Run("postgres_tail_"+b.name, func(t *testing.T) {
			t.Parallel()
			b.require(t) // skip at once without a real broker (fail under OUTBOX_TEST_REQUIRE)
			conformance.RunRelaySuite(t, conformance.RelayHarness{
				Store: conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
					f := pgOutboxWith(t, pgserver.URL(t), true, pgstore.Config{Limits: opts.Limits, Lanes: opts.Lanes})
					f.migrate(t)
					return f.outbox
				}},
				Broker:   b.harness(),
				HoldOpen: 6 * time.Second, // as in pgstore's own run
			})
		})
	}
}

// realNATS is the broker harness of the real NATS server
// (natsserver.URL): a publisher over a connection of each test's own and a
// stream per test.
func realNATS() conformance.PublisherHarness {
	return conformance.PublisherHarness{New: func(t *testing.T) conformance.Broker {
		url := natsserver.URL(t)
		stream, prefix := natsserver.Stream(t, url)
		nc, err := nats.Connect(url, nats.Name("txoutbox cli test relay"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := natspub.New(js, natspub.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var topics atomic.Int64
		return conformance.Broker{
			Publisher:       pub,
			Topic:           func(*testing.T) string { return fmt.Sprintf("%s.t%d", prefix, topics.Add(1)) },
			Consume:         natsConsume(url, stream),
			MissingTopic:    func(t *testing.T) string { return "nostream." + servers.Name(t, "missing") },
			MaxMessageBytes: int(nc.MaxPayload()),
		}
	}}
}

// realKafka is the broker harness of the real Kafka cluster: a publisher
// from kafkapub.Dial and a topic of four partitions per test.
func realKafka() conformance.PublisherHarness {
	return conformance.PublisherHarness{New: func(t *testing.T) conformance.Broker {
		brokers := kafkaserver.Brokers(t)
		pub, err := kafkapub.Dial(kafkapub.DialConfig{
			Brokers:         brokers,
			DeliveryTimeout: 4 * time.Second, // below the suite's PublishTimeout
			MaxMessageBytes: pairMaxMessageBytes,
		})
		if err != nil {
			t.Fatalf("kafkapub.Dial: %v", err)
		}
		t.Cleanup(pub.Close)
		return conformance.Broker{
			Publisher: pub,
			Topic: func(t *testing.T) string {
				return kafkaserver.ReplicatedTopic(t, brokers, 4, 1,
					map[string]string{"max.message.bytes": strconv.Itoa(pairMaxMessageBytes)})
			},
			Consume:         kafkaConsume(brokers),
			MissingTopic:    func(t *testing.T) string { return servers.Name(t, "missing") },
			MaxMessageBytes: pairMaxMessageBytes,
		}
	}}
}
