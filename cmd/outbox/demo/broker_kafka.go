package demo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/conformance/ledger"
)

// kafkaPartitions is the partition count of the demo's topic.
const kafkaPartitions = 4

// startKafka starts an in-process kfake cluster (one broker on a free
// loopback port) with the demo's topic.
func startKafka(ctx context.Context) (*broker, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, demoTopic))
	if err != nil {
		return nil, fmt.Errorf("embedded Kafka (kfake): %w", err)
	}
	b, err := openKafka(ctx, "kafka://"+strings.Join(cluster.ListenAddrs(), ","), cluster, demoTopic)
	if err != nil {
		cluster.Close()
		return nil, err
	}
	return b, nil
}

// openKafka returns the broker at raw; cluster is the embedded one, nil for
// a real cluster, on which the demo creates its topic and deletes it at the
// end.
func openKafka(ctx context.Context, raw string, cluster *kfake.Cluster, topic string) (*broker, error) {
	dc, err := kafkapub.ParseURL(raw)
	if err != nil {
		return nil, invalid("--broker %s: %v; %s", backend.Redact(raw), err, brokerExamples)
	}
	dc.ClientID = "outbox-demo"
	opts, err := dc.ClientOptions()
	if err != nil {
		return nil, invalid("--broker %s: %v", backend.Redact(raw), err)
	}
	if cluster == nil {
		if err := createTopic(ctx, opts, topic); err != nil {
			return nil, fmt.Errorf("the Kafka cluster at %s: %w", backend.Redact(raw), err)
		}
	}
	display := fmt.Sprintf("Kafka %s, topic %s (%d partitions, deleted at the end)", backend.Redact(raw), topic, kafkaPartitions)
	if cluster != nil {
		display = fmt.Sprintf("Kafka (kfake, in-process) on %s, topic %s (%d partitions)",
			strings.Join(cluster.ListenAddrs(), ","), topic, kafkaPartitions)
	}
	return &broker{
		display: display,
		url:     raw,
		topic:   topic,
		consume: func(ctx context.Context, fn func(ledger.Received)) error {
			return consumeKafka(ctx, opts, topic, fn)
		},
		close: func(ctx context.Context) error {
			if cluster != nil {
				cluster.Close()
				return nil
			}
			return deleteTopic(ctx, opts, topic)
		},
	}, nil
}

func createTopic(ctx context.Context, opts []kgo.Opt, topic string) error {
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(cctx); err != nil {
		return fmt.Errorf("does not answer: %w", err)
	}
	resp, err := kadm.NewClient(client).CreateTopic(cctx, kafkaPartitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create the demo's topic %s: %w", topic, err)
	}
	return nil
}

func deleteTopic(ctx context.Context, opts []kgo.Opt, topic string) error {
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	resp, err := kadm.NewClient(client).DeleteTopic(ctx, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("delete the demo's topic %s: %w", topic, err)
	}
	return nil
}

// consumeKafka reads every partition of topic from its start, without a
// consumer group, until ctx ends.
func consumeKafka(ctx context.Context, opts []kgo.Opt, topic string, fn func(ledger.Received)) error {
	client, err := kgo.NewClient(append(opts,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		return err
	}
	defer client.Close()
	for {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fetches.IsClientClosed() {
			return errors.New("the Kafka consumer was closed")
		}
		fetches.EachRecord(func(r *kgo.Record) {
			fn(ledger.Received{
				ID:      kafkapub.RecordID(r),
				Topic:   r.Topic,
				Key:     string(r.Key),
				Payload: r.Value,
			})
		})
	}
}
