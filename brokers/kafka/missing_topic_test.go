package kafkapub_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// TestMissingTopicKafka publishes to a topic that does not exist on a real
// broker that does not create topics on demand (auto.create.topics.enable
// false, as production clusters usually run): the error says which topic
// and to create it, and the relay does what the README documents: it
// retries the message with backoff while other topics keep flowing, and
// delivers it once the topic is created, or dead-letters it after
// MaxAttempts.
func TestMissingTopicKafka(t *testing.T) {
	t.Parallel()
	brokers := realBrokers(t)
	checkNoAutoCreate(t, brokers)

	t.Run("Error", func(t *testing.T) {
		t.Parallel()
		missing := servers.Name(t, "missing")
		err := publishOne(t, dial(t, testDialConfig(brokers)), missing)
		t.Logf("publishing to a missing topic: %v", err)
		if !errors.Is(err, kafkapub.ErrUnknownTopic) || !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("result = %v; want kafkapub.ErrUnknownTopic and kerr.UnknownTopicOrPartition", err)
		}
		// A missing topic is the message's failure, counted against it:
		// neither a broker outage (the relay would pause every topic and
		// never give up), nor a topic that waits without counting attempts
		// (it would never be dead-lettered), nor permanent (a topic created
		// later must get it).
		if errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, outbox.ErrTopicUnavailable) ||
			errors.Is(err, outbox.ErrPermanent) || errors.Is(err, outbox.ErrNotAttempted) {
			t.Errorf("result = %v; want an ordinary failure, not unavailable, topic unavailable, permanent or not attempted", err)
		}
		for _, want := range []string{missing, "create it"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("result = %v; want it to say %q", err, want)
			}
		}
		if topicExists(t, brokers, missing) {
			t.Errorf("topic %s exists after the publish; the publisher must not create topics", missing)
		}
	})

	t.Run("DeliveredOnceCreated", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		flowing, late := topic(t, brokers, 0), servers.Name(t, "late")
		fx := newDeliveryFixture(t, ctx, brokers, flowing)
		pub := &matchingPublisher{Publisher: dial(t, testDialConfig(brokers)), target: kafkapub.ErrUnknownTopic}
		cfg := conformance.TestRelayConfig(t)
		cfg.MaxAttempts = 1000                     // far more than the test lasts: the messages wait for their topic
		cfg.Logger = slog.New(slog.DiscardHandler) // the failures are the point
		conformance.StartRelay(t, fx.store, pub, cfg)

		// Two messages of one key: the second waits behind the first.
		waiting := commit(t, ctx, fx.ob,
			outbox.Message{Topic: late, Key: "late", Payload: []byte("first")},
			outbox.Message{Topic: late, Key: "late", Payload: []byte("second")})
		writeKeys(t, ctx, fx.ob, fx.ledger, flowing, 8, 200, "flowing")
		if err := fx.ledger.WaitAll(ctx); err != nil {
			t.Fatalf("the other topic did not flow while a message waits for its topic: %v; %s", err, fx.ledger.Report())
		}
		eventually(t, ctx, "the message to the missing topic to fail twice", func() bool { return pub.matched.Load() >= 2 })
		stats, err := fx.store.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats.Retrying == 0 || stats.Dead != 0 {
			t.Fatalf("before the topic exists: %d retrying, %d dead; want the first message retrying, none dead", stats.Retrying, stats.Dead)
		}

		kafkaserver.CreateTopic(t, brokers, late, testPartitions, 1, nil)
		conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, fx.ledger, late)
		fx.ledger.Committed(waiting...)
		fx.checkDelivered(t, ctx)
		t.Logf("%d failures of the missing topic before it was created", pub.matched.Load())
	})

	t.Run("DeadLetteredAfterMaxAttempts", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		fx := startDeadLetterFixture(t, ctx, brokers, dial(t, testDialConfig(brokers)))
		missing := servers.Name(t, "missing")
		msg := fx.write(t, ctx, outbox.Message{Topic: missing, Key: "m", Payload: []byte("nowhere to go")})
		dead := fx.deadLetterOf(t, ctx, msg[0].ID)
		if dead.Attempts != 3 {
			t.Errorf("dead-lettered after %d attempts, want MaxAttempts (3)", dead.Attempts)
		}
		for _, want := range []string{"UNKNOWN_TOPIC_OR_PARTITION", missing, "does not exist", "create it"} {
			if !strings.Contains(dead.LastError, want) {
				t.Errorf("the dead letter's error %q does not mention %q", dead.LastError, want)
			}
		}
	})
}

// matchingPublisher counts the results that match target.
type matchingPublisher struct {
	outbox.Publisher
	target  error
	matched atomic.Int64
}

func (p *matchingPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	res := p.Publisher.Publish(ctx, msgs)
	for _, err := range res {
		if errors.Is(err, p.target) {
			p.matched.Add(1)
		}
	}
	return res
}

// checkNoAutoCreate fails t unless every broker at brokers runs with
// auto.create.topics.enable=false: with it on, a publish would create the
// topic and the test would prove nothing.
func checkNoAutoCreate(t *testing.T, brokers []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	nodes, err := adm.ListBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	configs, err := adm.DescribeBrokerConfigs(ctx, nodes.NodeIDs()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range configs {
		value := "(not reported)"
		for _, c := range rc.Configs {
			if c.Key == "auto.create.topics.enable" {
				value = c.MaybeValue()
			}
		}
		if rc.Err != nil || value != "false" {
			t.Fatalf("broker %s runs with auto.create.topics.enable=%s (%v); these tests need it false", rc.Name, value, rc.Err)
		}
	}
}

// topicExists reports whether the cluster at brokers has topic.
func topicExists(t *testing.T, brokers []string, topic string) bool {
	t.Helper()
	ps, err := partitions(t.Context(), brokers, topic)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(ps) > 0
}
