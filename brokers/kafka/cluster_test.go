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
)

// TestClusterFailoverKafka runs a relay against a three-node Apache Kafka
// cluster (KRaft, replication factor 3, min.insync.replicas 2) through node
// crashes that kfake cannot show: a partition leader SIGKILLed with batches
// in flight, and the whole cluster down while writers go on. The subtests
// share the cluster, one after the other; each leaves every node running.
func TestClusterFailoverKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Kafka cluster and crashes it (a minute or more); skipped with -short")
	}
	c := kafkaserver.StartCluster(t, kafkaserver.ClusterConfig{Nodes: 3})
	t.Run("LeaderKilledMidBatch", func(t *testing.T) { testLeaderKilledMidBatch(t, c.For(t)) })
	t.Run("AllBrokersDown", func(t *testing.T) { testAllBrokersDown(t, c.For(t)) })
}

// clusterTopic creates a topic of testPartitions partitions on every node
// of c with min.insync.replicas 2, so that an acknowledged record is on two
// nodes at least and survives the crash of one. It also makes sure that
// the test leaves every node running, whatever happens: the topic's
// deletion needs them.
func clusterTopic(t *testing.T, c *kafkaserver.Cluster) string {
	t.Helper()
	tp := kafkaserver.ReplicatedTopic(t, c.AdminBrokers(), testPartitions, 3, map[string]string{"min.insync.replicas": "2"})
	t.Cleanup(c.StartAll) // runs before the topic's deletion
	return tp
}

// testLeaderKilledMidBatch SIGKILLs the leader of a partition while the
// relay has a batch in flight and writers keep committing: every message
// committed before, during and after the crash arrives, each key in commit
// order, once the relay delivered all of them with the node still down and
// again after it came back.
func testLeaderKilledMidBatch(t *testing.T, c *kafkaserver.Cluster) {
	ctx := testContext(t)
	brokers := c.Brokers()
	tp := clusterTopic(t, c)
	fx := newDeliveryFixture(t, ctx, brokers, tp)
	pub := &inFlightPublisher{Publisher: dial(t, testDialConfig(brokers))}
	conformance.StartRelay(t, fx.store, pub, conformance.TestRelayConfig(t))

	w := fx.startWriters(t, ctx, tp, "before")
	eventually(t, ctx, "deliveries before the crash", func() bool { return fx.delivered() >= 200 })
	leader := partitionLeader(t, ctx, brokers, tp, 0, -1)
	node := c.Index(leader)
	if node < 0 {
		t.Fatalf("partition 0 is led by %d, not a node of the cluster", leader)
	}
	eventually(t, ctx, "a batch in flight", func() bool { return pub.inFlight.Load() > 0 })
	c.Kill(node)
	pub.faults.Add(1)
	killedAt := w.written.Load()
	t.Logf("killed node %d, the leader of partition 0, after %d messages written and %d delivered", leader, killedAt, fx.delivered())
	t.Logf("partition 0 is now led by node %d", partitionLeader(t, ctx, brokers, tp, 0, leader))

	// With one node down every partition still has two in-sync replicas:
	// the relay must deliver everything, written before or after the
	// crash, without the killed node.
	w.waitWritten(t, ctx, killedAt+400)
	w.stop()
	fx.checkDelivered(t, ctx)
	t.Logf("%d Publish calls in flight across the crash, %d failed results", pub.spanned.Load(), pub.failed.Load())
	if pub.spanned.Load() == 0 {
		t.Fatal("no Publish call was in flight across the crash: the test did not crash a broker mid-batch")
	}

	c.Start(node)
	w = fx.startWriters(t, ctx, tp, "after")
	w.waitWritten(t, ctx, 400)
	w.stop()
	fx.checkDelivered(t, ctx)
	waitInSync(t, ctx, brokers, tp, 3)
}

// testAllBrokersDown SIGKILLs every node while the relay publishes and
// writers go on, holds the outage for ten seconds, and starts the nodes
// again: the relay resumes by itself, delivers every committed message in
// order per key, dead-letters nothing, and logs the outage once per
// backoff step.
func testAllBrokersDown(t *testing.T, c *kafkaserver.Cluster) {
	ctx := testContext(t)
	brokers := c.Brokers()
	tp := clusterTopic(t, c)
	fx := newDeliveryFixture(t, ctx, brokers, tp)
	logs := newLogCapture()
	pub := &countingPublisher{Publisher: dial(t, testDialConfig(brokers))}
	cfg := conformance.TestRelayConfig(t)
	cfg.Logger = slog.New(logs)
	conformance.StartRelay(t, fx.store, pub, cfg)

	w := fx.startWriters(t, ctx, tp, "before")
	eventually(t, ctx, "deliveries before the outage", func() bool { return fx.delivered() >= 200 })
	for i := range len(brokers) {
		c.Kill(i)
	}
	downAt := w.written.Load()
	t.Logf("killed every node after %d messages written and %d delivered", downAt, fx.delivered())
	time.Sleep(10 * time.Second) // the outage, while the writers go on
	eventually(t, ctx, "the relay to notice the outage", func() bool { return logs.count("broker unavailable") > 0 })
	c.StartAll()
	upAt := w.written.Load()
	t.Logf("started every node after %d messages written during the outage", upAt-downAt)
	w.waitWritten(t, ctx, upAt+400)
	w.stop()
	fx.checkDelivered(t, ctx)
	checkLogsPerStep(t, logs, pub)
	waitInSync(t, ctx, brokers, tp, 3)
}

// inFlightPublisher tells how many Publish calls are running, so that a
// test can crash a broker while a batch is in flight, and how many of them
// spanned the crash; it counts failed results too.
type inFlightPublisher struct {
	outbox.Publisher
	inFlight atomic.Int32
	faults   atomic.Int32 // bumped by the test once it injected a fault
	spanned  atomic.Int32 // calls that started before a fault and returned after it
	failed   atomic.Int64
}

func (p *inFlightPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	faults := p.faults.Load()
	res := p.Publisher.Publish(ctx, msgs)
	if p.faults.Load() != faults {
		p.spanned.Add(1)
	}
	for _, err := range res {
		if err != nil {
			p.failed.Add(1)
		}
	}
	return res
}

// partitions returns the partitions of topic as the cluster at brokers
// describes them, or an error while no broker answers.
func partitions(ctx context.Context, brokers []string, topic string) (kadm.PartitionDetails, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(actx, topic)
	if err != nil {
		return nil, err
	}
	td := topics[topic]
	return td.Partitions, td.Err
}

// partitionLeader waits until partition p of topic has a leader other than
// not, and returns it.
func partitionLeader(t *testing.T, ctx context.Context, brokers []string, topic string, p int32, not int32) int32 {
	t.Helper()
	leader := int32(-1)
	eventually(t, ctx, fmt.Sprintf("a leader of partition %d other than %d", p, not), func() bool {
		ps, err := partitions(ctx, brokers, topic)
		if err != nil {
			return false
		}
		leader = ps[p].Leader
		return leader >= 0 && leader != not
	})
	return leader
}

// waitInSync waits until every partition of topic has its replicas
// in sync again, so that the next test starts with a healthy cluster.
func waitInSync(t *testing.T, ctx context.Context, brokers []string, topic string, replicas int) {
	t.Helper()
	eventually(t, ctx, "every replica back in sync", func() bool {
		ps, err := partitions(ctx, brokers, topic)
		if err != nil || len(ps) == 0 {
			return false
		}
		for _, p := range ps {
			if len(p.ISR) != replicas {
				return false
			}
		}
		return true
	})
}
