package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
)

// The Kafka brokers of this package's tests. A test about the relay against
// Kafka uses a real broker: the shared one (kafkaserver.Brokers) when it
// leaves the broker alone, a node of its own (kafkaserver.StartCluster) when
// it stops and starts it. A test about the CLI itself (metrics, dead-letter
// commands, tracing) uses kfake, which costs nothing and starts at once.

// realKafkaBroker gives t a topic of four partitions on node 0 of cluster, a
// throwaway cluster that t or one of its parents started, and stops and
// starts that node as the broker outage.
func realKafkaBroker(t testing.TB, cluster *kafkaserver.Cluster) brokerFixture {
	t.Helper()
	br := kafkaTopicFixture(t, cluster.Brokers())
	// The cluster reports failures to the test that started it, which a
	// subtest must not end (a FailNow on a parent from a subtest panics
	// the test binary): through For(t) they end t instead.
	br.stop = func() { cluster.For(t).Stop(0) }
	br.start = func() { cluster.For(t).Start(0) }
	return br
}

// sharedKafkaBroker gives t a topic of four partitions on the real Kafka
// cluster shared by every test (OUTBOX_TEST_KAFKA_BROKERS, else a local
// node; the test skips without one). It cannot be stopped: stop and start
// are nil.
func sharedKafkaBroker(t testing.TB) brokerFixture {
	t.Helper()
	return kafkaTopicFixture(t, kafkaserver.Brokers(t))
}

// kfakeBroker starts a kfake cluster of t's own, which it can stop and
// start, with a topic of four partitions.
func kfakeBroker(t testing.TB) brokerFixture {
	t.Helper()
	fake := kafkaserver.RestartableFake(t)
	br := kafkaTopicFixture(t, fake.Addrs())
	br.stop, br.start = fake.Stop, fake.Start
	return br
}

// kafkaTopicFixture is a topic of t's own on the cluster at brokers, with a
// consumer that reads it from its start and rides out outages (the kgo
// client reconnects by itself).
func kafkaTopicFixture(t testing.TB, brokers []string) brokerFixture {
	t.Helper()
	topic := kafkaserver.Topic(t, brokers, 4)
	return brokerFixture{
		kind:     "kafka",
		url:      "kafka://" + strings.Join(brokers, ","),
		topic:    topic,
		consumer: conformance.Broker{Consume: kafkaConsume(brokers)},
		setMaxMessageBytes: func(ctx context.Context, n int) error {
			return setTopicConfig(ctx, brokers, topic, "max.message.bytes", strconv.Itoa(n))
		},
	}
}

func setTopicConfig(ctx context.Context, brokers []string, topic, name, value string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: name, Value: &value}}, topic)
	if err != nil {
		return err
	}
	for _, r := range resp {
		err = errors.Join(err, r.Err)
	}
	return err
}

// kafkaConsume reads topics from their start with a client of its own.
func kafkaConsume(brokers []string) func(context.Context, []string, func(conformance.Received)) error {
	return func(ctx context.Context, topics []string, fn func(conformance.Received)) error {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(brokers...),
			kgo.ConsumeTopics(topics...),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchMaxWait(100*time.Millisecond),
		)
		if err != nil {
			return err
		}
		defer cl.Close()
		for {
			fetches := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return err
			}
			if fetches.IsClientClosed() {
				return kgo.ErrClientClosed
			}
			fetches.EachRecord(func(r *kgo.Record) {
				h := make(map[string]string, len(r.Headers))
				for _, hd := range r.Headers {
					h[hd.Key] = string(hd.Value)
				}
				fn(conformance.Received{ID: kafkapub.RecordID(r), Topic: r.Topic, Key: string(r.Key), Payload: r.Value, Headers: h})
			})
		}
	}
}
