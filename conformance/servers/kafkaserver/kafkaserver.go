// Package kafkaserver gives tests a Kafka cluster and a topic of their own on
// it: a real broker, or franz-go's in-process kfake cluster.
//
// Brokers' cluster is the one in OUTBOX_TEST_KAFKA_BROKERS, else a
// throwaway single KRaft node run from a local Apache Kafka installation (the
// jars scripts/services fetches from Maven Central; see Home), else a
// single-node KRaft apache/kafka container; with none the test skips, or
// fails under OUTBOX_TEST_REQUIRE. StartCluster starts a throwaway cluster of
// a test's own, of several nodes that the test can kill and restart. Fake and RestartableFake need nothing: kfake
// speaks the Kafka wire protocol in-process. See package servers, whose Main
// the test binary must call to use Brokers.
//
// The container and the fakes create no topic on first use (unless a fake is
// given kfake.AllowAutoTopicCreation): a test that forgets Topic fails
// instead of passing by luck.
package kafkaserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// Docker image of the throwaway container.
const (
	ImageRepository = "apache/kafka"
	ImageTag        = "3.9.1"
)

var finder = servers.Finder[[]string]{
	Backend: servers.Kafka,
	FromEnv: parseBrokers,
	Local:   startLocal,
	Docker:  startContainer,
}

// Brokers returns the seed brokers (host:port) of a real Kafka cluster,
// finding it on first use.
func Brokers(t testing.TB) []string {
	t.Helper()
	return finder.Get(t)
}

func parseBrokers(v string) ([]string, error) {
	var brokers []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return nil, errors.New("want a comma-separated list of host:port")
	}
	return brokers, nil
}

// Topic creates a topic for this test alone with the given number of
// partitions (replication factor 1) on the cluster at brokers, waits until
// every partition has a leader, and deletes the topic when the test ends.
func Topic(t testing.TB, brokers []string, partitions int) string {
	t.Helper()
	return ReplicatedTopic(t, brokers, partitions, 1, nil)
}

// ReplicatedTopic is Topic with a replication factor and topic
// configurations (e.g. "min.insync.replicas").
func ReplicatedTopic(t testing.TB, brokers []string, partitions, replicas int, configs map[string]string) string {
	t.Helper()
	name := servers.Name(t, "outbox")
	CreateTopic(t, brokers, name, partitions, replicas, configs)
	return name
}

// CreateTopic is ReplicatedTopic with the topic's name chosen by the test,
// for tests that publish to a topic before it exists (servers.Name gives a
// name of the test's own).
func CreateTopic(t testing.TB, brokers []string, name string, partitions, replicas int, configs map[string]string) {
	t.Helper()
	cfg := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfg[k] = &v
	}
	err := withAdmin(brokers, func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.CreateTopic(ctx, int32(partitions), int16(replicas), cfg, name)
		if err != nil {
			return err
		}
		if resp.Err != nil {
			return fmt.Errorf("%w: %s", resp.Err, resp.ErrMessage)
		}
		return waitForLeaders(ctx, adm, name, partitions)
	})
	if err != nil {
		t.Fatalf("kafkaserver: create topic %s with %d partitions: %v", name, partitions, err)
	}
	t.Cleanup(func() {
		err := withAdmin(brokers, func(ctx context.Context, adm *kadm.Client) error {
			resp, err := adm.DeleteTopic(ctx, name)
			if err != nil {
				return err
			}
			if resp.Err != nil && !errors.Is(resp.Err, kerr.UnknownTopicOrPartition) {
				return fmt.Errorf("%w: %s", resp.Err, resp.ErrMessage)
			}
			return nil
		})
		if err != nil {
			t.Errorf("kafkaserver: delete topic %s (a test that stops the cluster should start it again before it ends): %v", name, err)
		}
	})
}

// waitForLeaders polls the topic's metadata until it has all its partitions
// and each has a leader: a real broker answers CreateTopics before then.
func waitForLeaders(ctx context.Context, adm *kadm.Client, topic string, partitions int) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		topics, err := adm.ListTopics(ctx, topic)
		if err == nil {
			td := topics[topic]
			led := 0
			for _, p := range td.Partitions {
				if p.Err == nil && p.Leader >= 0 {
					led++
				}
			}
			if td.Err == nil && led == partitions {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partitions without a leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// withAdmin runs fn with an admin client of its own on brokers.
func withAdmin(brokers []string, fn func(context.Context, *kadm.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	return fn(ctx, adm)
}

// startContainer runs a single KRaft node, broker and controller in one. A
// client learns broker addresses from the broker itself, so the advertised
// listener must be the host-side address: the host port is chosen first and
// bound explicitly.
func startContainer() ([]string, error) {
	port, err := servers.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("%s:%d", servers.DockerHost(), port)
	res, err := servers.RunContainer(&dockertest.RunOptions{
		Repository: ImageRepository,
		Tag:        ImageTag,
		Env: []string{
			"CLUSTER_ID=" + clusterID(),
			"KAFKA_NODE_ID=1",
			"KAFKA_PROCESS_ROLES=broker,controller",
			"KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093",
			"KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://" + addr,
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
			"KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER",
			"KAFKA_INTER_BROKER_LISTENER_NAME=PLAINTEXT",
			"KAFKA_CONTROLLER_QUORUM_VOTERS=1@localhost:9093",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE=false",
			"KAFKA_LOG_DIRS=/tmp/kraft-combined-logs",
		},
		ExposedPorts: []string{"9092/tcp"},
		PortBindings: map[docker.Port][]docker.PortBinding{
			"9092/tcp": {{HostPort: strconv.Itoa(port)}},
		},
	})
	if err != nil {
		return nil, err
	}
	brokers := []string{addr}
	err = servers.WaitContainer(res, func(ctx context.Context) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			return err
		}
		adm := kadm.NewClient(cl)
		defer adm.Close()
		bs, err := adm.ListBrokers(ctx)
		if err == nil && len(bs) == 0 {
			err = errors.New("no brokers registered yet")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return brokers, nil
}

// clusterID returns a random KRaft cluster ID: 16 bytes, URL-safe base64,
// not starting with "-" (the storage tool would take such an ID for an
// option, one time in 64; Kafka's own Uuid.randomUuid avoids it too).
func clusterID() string {
	b := make([]byte, 16)
	for {
		_, _ = rand.Read(b)
		if id := base64.RawURLEncoding.EncodeToString(b); id[0] != '-' {
			return id
		}
	}
}
