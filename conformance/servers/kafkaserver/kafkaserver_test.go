package kafkaserver

import (
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

func TestParseBrokers(t *testing.T) {
	t.Parallel()
	got, err := parseBrokers(" a:9092, b:9093,,")
	if err != nil || !slices.Equal(got, []string{"a:9092", "b:9093"}) {
		t.Errorf("parseBrokers = %q, %v", got, err)
	}
	if _, err := parseBrokers(" , "); err == nil {
		t.Error("parseBrokers accepted an empty list")
	}
}

func topicExists(t *testing.T, brokers []string, topic string) bool {
	t.Helper()
	var exists bool
	err := withAdmin(brokers, func(ctx context.Context, adm *kadm.Client) error {
		topics, err := adm.ListTopics(ctx)
		exists = topics.Has(topic)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return exists
}

func produce(t *testing.T, brokers []string, topic string, values ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(v), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %q: %v", v, err)
		}
	}
}

// consume reads n records from the start of topic.
func consume(t *testing.T, brokers []string, topic string, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %q, want %d records: %v", got, n, err)
		}
		fetches.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	slices.Sort(got)
	return got
}

func TestFakeTopicIsCreatedAndDeleted(t *testing.T) {
	t.Parallel()
	brokers := Fake(t).ListenAddrs()
	var topic string
	t.Run("use", func(t *testing.T) {
		topic = Topic(t, brokers, 3)
		if !topicExists(t, brokers, topic) {
			t.Fatalf("topic %s does not exist during the test", topic)
		}
		var partitions int
		err := withAdmin(brokers, func(ctx context.Context, adm *kadm.Client) error {
			topics, err := adm.ListTopics(ctx, topic)
			partitions = len(topics[topic].Partitions)
			return err
		})
		if err != nil || partitions != 3 {
			t.Errorf("topic has %d partitions (%v), want 3", partitions, err)
		}
		produce(t, brokers, topic, "a", "b")
		if got := consume(t, brokers, topic, 2); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("consumed %q, want [a b]", got)
		}
	})
	if topicExists(t, brokers, topic) {
		t.Errorf("topic %s still exists after the test", topic)
	}
}

func TestFakeDefaults(t *testing.T) {
	t.Parallel()
	if n := len(Fake(t).ListenAddrs()); n != 1 {
		t.Errorf("Fake has %d brokers, want 1", n)
	}
	if n := len(Fake(t, kfake.NumBrokers(3)).ListenAddrs()); n != 3 {
		t.Errorf("Fake(NumBrokers(3)) has %d brokers, want 3", n)
	}
}

func TestRestartableFakeKeepsRecords(t *testing.T) {
	t.Parallel()
	f := RestartableFake(t)
	brokers := f.Addrs()
	topic := Topic(t, brokers, 2)
	produce(t, brokers, topic, "1", "2", "3")

	f.Stop()
	f.Stop() // stopping twice is harmless
	if conn, err := net.DialTimeout("tcp", brokers[0], time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still answers after Stop", brokers[0])
	}

	f.Start()
	if !slices.Equal(f.Addrs(), brokers) {
		t.Errorf("addresses changed across the restart: %v, then %v", brokers, f.Addrs())
	}
	produce(t, brokers, topic, "4")
	if got := consume(t, brokers, topic, 4); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Errorf("after the restart consumed %q, want [1 2 3 4]", got)
	}
}

func TestBrokersTopic(t *testing.T) {
	t.Parallel()
	brokers := Brokers(t)
	topic := Topic(t, brokers, 2)
	produce(t, brokers, topic, "x")
	if got := consume(t, brokers, topic, 1); !slices.Equal(got, []string{"x"}) {
		t.Errorf("consumed %q, want [x]", got)
	}
}

func TestClusterID(t *testing.T) {
	t.Parallel()
	if id := clusterID(); len(id) != 22 {
		t.Errorf("clusterID() = %q (%s chars), want 22", id, strconv.Itoa(len(id)))
	}
	// One random ID in 64 would start with "-" (the storage tool then
	// fails with "argument --cluster-id/-t: expected one argument").
	for range 2000 {
		if id := clusterID(); strings.HasPrefix(id, "-") {
			t.Fatalf("clusterID() = %q starts with a dash", id)
		}
	}
}

// TestClusterSurvivesAKilledLeader is what the failover tests rely on: a
// three-node cluster whose partition leader is SIGKILLed elects another
// leader, takes writes with min.insync.replicas=2, and the killed node comes
// back on its ports and data.
func TestClusterSurvivesAKilledLeader(t *testing.T) {
	c := StartCluster(t, ClusterConfig{Nodes: 3})
	brokers := c.Brokers()
	topic := ReplicatedTopic(t, brokers, 1, 3, nil)
	produce(t, brokers, topic, "before")

	leader := partitionLeader(t, brokers, topic)
	i := c.Index(leader)
	if i < 0 {
		t.Fatalf("leader %d is not a node of the cluster", leader)
	}
	c.Kill(i)
	produce(t, brokers, topic, "during")
	if now := partitionLeader(t, brokers, topic); now == leader {
		t.Errorf("partition still led by killed node %d", leader)
	}
	c.Start(i)
	produce(t, brokers, topic, "after")
}

func partitionLeader(t *testing.T, brokers []string, topic string) int32 {
	t.Helper()
	var leader int32 = -1
	err := withAdmin(brokers, func(ctx context.Context, adm *kadm.Client) error {
		topics, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		leader = topics[topic].Partitions[0].Leader
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return leader
}
