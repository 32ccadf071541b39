package kafkapub_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

// testMaxMessageBytes is the max.message.bytes of every test topic, and the
// batch limit of the test publishers: the conformance suite checks that a
// larger payload is refused.
const testMaxMessageBytes = 64 << 10

// testPartitions is the partition count of test topics: more than one, so
// that keys spread and per-key order is not an accident of a single log.
const testPartitions = 4

// testDeliveryTimeout is below conformance.TestRelayConfig's PublishTimeout.
const testDeliveryTimeout = 4 * time.Second

// testDialConfig is the configuration of test publishers on brokers.
func testDialConfig(brokers []string) kafkapub.DialConfig {
	return kafkapub.DialConfig{
		Brokers:         brokers,
		DeliveryTimeout: testDeliveryTimeout,
		MaxMessageBytes: testMaxMessageBytes,
	}
}

// dial returns a publisher from Dial, closed when t ends.
func dial(t testing.TB, cfg kafkapub.DialConfig) *kafkapub.Publisher {
	t.Helper()
	pub, err := kafkapub.Dial(cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(pub.Close)
	return pub
}

// newClient returns a client with the options Dial uses plus extra, closed
// when t ends.
func newClient(t testing.TB, cfg kafkapub.DialConfig, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts, err := cfg.ClientOptions()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// topic creates a topic of testPartitions partitions for this test with
// max.message.bytes set to maxBytes (when positive).
func topic(t testing.TB, brokers []string, maxBytes int) string {
	t.Helper()
	name := kafkaserver.Topic(t, brokers, testPartitions)
	if maxBytes > 0 {
		setTopicConfig(t, brokers, name, "max.message.bytes", strconv.Itoa(maxBytes))
	}
	return name
}

func setTopicConfig(t testing.TB, brokers []string, topic, name, value string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: name, Value: &value}}, topic)
	if err == nil {
		for _, r := range resp {
			if r.Err != nil {
				err = errors.Join(err, r.Err)
			}
		}
	}
	if err != nil {
		t.Fatalf("set %s=%s on topic %s: %v", name, value, topic, err)
	}
}

// consumer returns a conformance Consume function that reads topics from
// their start with a client of its own.
func consumer(brokers []string) func(context.Context, []string, func(conformance.Received)) error {
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
			// Other fetch errors (a broker restarting, a leader moving)
			// are retried by the client.
			fetches.EachRecord(func(r *kgo.Record) { fn(received(r)) })
		}
	}
}

func received(r *kgo.Record) conformance.Received {
	headers := make(map[string]string, len(r.Headers))
	for _, h := range r.Headers {
		headers[h.Key] = string(h.Value)
	}
	return conformance.Received{
		ID:      kafkapub.RecordID(r),
		Topic:   r.Topic,
		Key:     string(r.Key),
		Payload: r.Value,
		Headers: maps.Clone(headers),
	}
}

// harness returns the publisher harness on the cluster brokers returns;
// publisher builds the publisher under test.
func harness(brokers func(t *testing.T) []string, publisher func(t *testing.T, brokers []string) *kafkapub.Publisher) conformance.PublisherHarness {
	return conformance.PublisherHarness{New: func(t *testing.T) conformance.Broker {
		bs := brokers(t)
		return conformance.Broker{
			Publisher:       publisher(t, bs),
			Topic:           func(t *testing.T) string { return topic(t, bs, testMaxMessageBytes) },
			Consume:         consumer(bs),
			MissingTopic:    func(t *testing.T) string { return servers.Name(t, "missing") },
			MaxMessageBytes: testMaxMessageBytes,
		}
	}}
}

// fakeBrokers starts a kfake cluster of the test's own.
func fakeBrokers(t *testing.T) []string { return kafkaserver.Fake(t).ListenAddrs() }

// dialed builds the publisher with Dial.
func dialed(t *testing.T, brokers []string) *kafkapub.Publisher {
	return dial(t, testDialConfig(brokers))
}

// overOwnClient builds the publisher with New over a client of the test.
func overOwnClient(t *testing.T, brokers []string) *kafkapub.Publisher {
	pub, err := kafkapub.New(newClient(t, testDialConfig(brokers)), kafkapub.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
