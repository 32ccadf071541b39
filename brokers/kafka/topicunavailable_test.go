package kafkapub_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// topicCountingPublisher counts the Publish calls that carry a message of
// one topic.
type topicCountingPublisher struct {
	outbox.Publisher
	topic string
	calls atomic.Int32
}

func (p *topicCountingPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	for _, m := range msgs {
		if m.Topic == p.topic {
			p.calls.Add(1)
			break
		}
	}
	return p.Publisher.Publish(ctx, msgs)
}

// TestUnavailableTopicWaitsOthersFlowKafka: on a real three-node cluster
// with one node stopped, a topic of three replicas with min.insync.replicas
// 3 refuses every record with NOT_ENOUGH_REPLICAS, while a topic with
// min.insync.replicas 2 takes them. The relay holds the first topic back,
// counting no attempt and dead-lettering nothing although it probes the
// topic more often than MaxAttempts, while the healthy topic's messages all
// arrive; a key with a message on each topic keeps its order (the healthy
// one waits). Once min.insync.replicas is lowered to 2, the waiting
// messages arrive in per-key order. The relay never pauses as a whole.
//
// A single broker cannot show this: since KIP-966 (Kafka 4.0) a broker
// enforces min(min.insync.replicas, replication factor), so a topic of one
// replica takes every record whatever its min.insync.replicas.
func TestUnavailableTopicWaitsOthersFlowKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Kafka cluster; skipped with -short")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := kafkaserver.StartCluster(t, kafkaserver.ClusterConfig{Nodes: 3})
	brokers, admin := c.Brokers(), c.AdminBrokers()
	bad := kafkaserver.ReplicatedTopic(t, admin, testPartitions, 3, map[string]string{"min.insync.replicas": "3"})
	good := kafkaserver.ReplicatedTopic(t, admin, testPartitions, 3, map[string]string{"min.insync.replicas": "2"})
	t.Cleanup(c.StartAll) // before the topics' deletion, which needs every node
	c.Stop(2)
	eventually(t, ctx, "the stopped node to leave the in-sync replicas", func() bool {
		return maxInSync(ctx, admin, bad) == 2
	})

	store := memory.NewStore(memory.StoreConfig{})
	ob := conformance.NewMemoryOutbox(store)
	goodLedger, badLedger := conformance.NewLedger(), conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, goodLedger, good)
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, badLedger, bad)

	dialCfg := testDialConfig(brokers)
	dialCfg.DeliveryTimeout = time.Second // each probe of the bad topic costs one
	pub := &topicCountingPublisher{Publisher: dial(t, dialCfg), topic: bad}
	logs := newLogCapture()
	cfg := conformance.TestRelayConfig(t)
	cfg.MaxAttempts = 2 // fewer than the probes below: they must not count
	cfg.Logger = slog.New(logs)
	conformance.StartRelay(t, store, pub, cfg)

	// Key x: first on the bad topic, then on the good one, which must wait.
	x := []outbox.Message{
		{Topic: bad, Key: "x", Payload: []byte("x-0")},
		{Topic: good, Key: "x", Payload: []byte("x-1")},
	}
	write := func(msgs ...outbox.Message) []outbox.Message {
		t.Helper()
		tx, err := ob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return msgs // with their IDs
	}
	write(x...)
	badLedger.Committed(x[0])
	for i := range 200 {
		if i%10 == 0 {
			badLedger.Committed(write(outbox.Message{Topic: bad, Key: fmt.Sprint("b", i%4), Payload: fmt.Appendf(nil, "bad-%d", i)})...)
		}
		goodLedger.Committed(write(outbox.Message{Topic: good, Key: fmt.Sprint("g", i%10), Payload: fmt.Appendf(nil, "good-%d", i)})...)
	}

	if err := goodLedger.WaitAll(ctx); err != nil {
		t.Fatalf("the healthy topic did not flow beside the unavailable one: %v; %s", err, goodLedger.Report())
	}
	// The relay logs each pause step of a topic once, as "... topic=<name> failures=<n> ...".
	badSteps := func() int { return logs.count("topic=" + bad + " failures=") }
	eventually(t, ctx, "the unavailable topic to be probed more often than MaxAttempts",
		func() bool { return badSteps() > cfg.MaxAttempts })
	if rep := badLedger.Report(); rep.Delivered != 0 {
		t.Fatalf("%d messages arrived on a topic with too few in-sync replicas", rep.Delivered)
	}
	if rep := goodLedger.Report(); rep.Unknown != 0 {
		t.Fatalf("x-1 arrived while x-0, earlier in its key, waits: %s", rep)
	}
	if dead, _ := store.ListDead(ctx, outbox.ListDeadParams{}); len(dead) != 0 {
		t.Fatalf("%d messages were dead-lettered while their topic was unavailable: %s", len(dead), dead[0].LastError)
	}

	setTopicConfig(t, admin, bad, "min.insync.replicas", "2")
	goodLedger.Committed(x[1])
	for _, l := range []*conformance.Ledger{badLedger, goodLedger} {
		if err := l.WaitAll(ctx); err != nil {
			t.Fatalf("after min.insync.replicas was lowered: %v; %s", err, l.Report())
		}
	}
	for name, l := range map[string]*conformance.Ledger{"unavailable topic": badLedger, "healthy topic": goodLedger} {
		rep := l.Report()
		t.Logf("%s: %s", name, rep)
		if !rep.Clean() {
			t.Errorf("%s: %s", name, rep)
		}
	}
	if dead, _ := store.ListDead(ctx, outbox.ListDeadParams{}); len(dead) != 0 {
		t.Fatalf("%d messages were dead-lettered: %s", len(dead), dead[0].LastError)
	}
	steps, calls := badSteps(), int(pub.calls.Load())
	t.Logf("%d publishes carried the unavailable topic, %d pause steps logged; warnings: %q", calls, steps, logs.lines())
	if calls > steps+cfg.Concurrency {
		t.Errorf("%d publishes carried the unavailable topic for %d pause steps; want one probe per step, the other claims handing its records back unpublished", calls, steps)
	}
	if n := logs.count("broker unavailable"); n != 0 {
		t.Errorf("the relay paused as a whole %d times for one unavailable topic", n)
	}
}

// maxInSync returns the largest in-sync replica count among the partitions
// of topic, or -1 while the cluster does not say.
func maxInSync(ctx context.Context, brokers []string, topic string) int {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return -1
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(actx, topic)
	if err != nil || topics[topic].Err != nil || len(topics[topic].Partitions) == 0 {
		return -1
	}
	n := 0
	for _, p := range topics[topic].Partitions {
		n = max(n, len(p.ISR))
	}
	return n
}
