package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	outbox "github.com/txoutbox/txoutbox/core"
)

// kafkaPartitions is the partition count of every topic the bench creates.
const kafkaPartitions = 4

// kafkaBroker is a Kafka cluster: an in-process kfake cluster, or a real
// one on which each measurement creates a topic and deletes it at its end.
type kafkaBroker struct {
	spec    string
	cluster *kfake.Cluster // nil for a real cluster
	dial    kafkapub.DialConfig
	opts    []kgo.Opt
	admin   *kadm.Client
	client  *kgo.Client
}

func startKfake(ctx context.Context) (*kafkaBroker, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	b, err := openKafka(ctx, "kafka://"+strings.Join(cluster.ListenAddrs(), ","), cluster)
	if err != nil {
		cluster.Close()
		return nil, err
	}
	b.spec = "kfake"
	return b, nil
}

func openKafka(ctx context.Context, spec string, cluster *kfake.Cluster) (*kafkaBroker, error) {
	dc, err := kafkapub.ParseURL(spec)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", redact(spec), err)
	}
	dc.ClientID = "outbox-bench"
	opts, err := dc.ClientOptions()
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", redact(spec), err)
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", redact(spec), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(pctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("the Kafka cluster at %s does not answer: %w", redact(spec), err)
	}
	return &kafkaBroker{spec: redact(spec), cluster: cluster, dial: dc, opts: opts, admin: kadm.NewClient(client), client: client}, nil
}

func (b *kafkaBroker) info(ctx context.Context) Component {
	c := Component{Spec: b.spec, Kind: "kafka", Client: "franz-go " + moduleVersion("github.com/twmb/franz-go"),
		Notes: fmt.Sprintf("%d partitions per topic, acks=all, idempotent producer, linger 0 (kafkapub's defaults)", kafkaPartitions)}
	if b.cluster != nil {
		c.Server = "kfake " + moduleVersion("github.com/twmb/franz-go/pkg/kfake") + " (in-process, in this process)"
		return c
	}
	c.Server = "Kafka"
	if v, err := b.admin.ApiVersions(ctx); err == nil {
		for _, bv := range v {
			if bv.Err == nil {
				c.Server = "Kafka " + bv.VersionGuess()
				break
			}
		}
	}
	if settings := b.brokerSettings(ctx); settings != "" {
		c.Notes += "; " + settings
	}
	return c
}

// brokerSettings describes the cluster's size and the broker settings that
// bear on an acknowledgement's cost: how many replicas acks=all waits for,
// and whether the broker fsyncs before it acknowledges (by default it does
// not: it relies on replication, and with one broker an acknowledged
// record is in the page cache).
func (b *kafkaBroker) brokerSettings(ctx context.Context) string {
	meta, err := b.admin.BrokerMetadata(ctx)
	if err != nil || len(meta.Brokers) == 0 {
		return ""
	}
	parts := []string{plural(len(meta.Brokers), "broker")}
	configs, err := b.admin.DescribeBrokerConfigs(ctx, meta.Brokers[0].NodeID)
	if err != nil {
		return strings.Join(parts, ", ")
	}
	for _, rc := range configs {
		for _, cfg := range rc.Configs {
			if cfg.Value == nil {
				continue
			}
			switch cfg.Key {
			case "default.replication.factor", "min.insync.replicas", "log.flush.interval.messages":
				parts = append(parts, cfg.Key+"="+*cfg.Value)
			}
		}
	}
	return strings.Join(parts, ", ")
}

func (b *kafkaBroker) close() error {
	b.client.Close()
	if b.cluster != nil {
		b.cluster.Close()
	}
	return nil
}

func (b *kafkaBroker) newTopic(ctx context.Context, tag string) (topicTarget, error) {
	topic := "outbox-bench-" + tag
	resp, err := b.admin.CreateTopic(ctx, kafkaPartitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return nil, fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := b.waitForLeaders(ctx, topic); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", topic, err)
	}
	return &kafkaTopic{b: b, topic: topic}, nil
}

// waitForLeaders returns once every partition of topic has a leader. A real
// broker answers CreateTopics before then, and a measurement that started
// at once would time the election, its producer retrying meanwhile.
func (b *kafkaBroker) waitForLeaders(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		topics, err := b.admin.ListTopics(ctx, topic)
		if err == nil {
			td := topics[topic]
			led := 0
			for _, p := range td.Partitions {
				if p.Err == nil && p.Leader >= 0 {
					led++
				}
			}
			if td.Err == nil && led == kafkaPartitions {
				return nil
			}
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("partitions without a leader: %w", err)
		}
	}
}

type kafkaTopic struct {
	b     *kafkaBroker
	topic string
}

func (t *kafkaTopic) name() string { return t.topic }

func (t *kafkaTopic) publisher(context.Context) (outbox.Publisher, func(), error) {
	pub, err := kafkapub.Dial(t.b.dial)
	if err != nil {
		return nil, nil, err
	}
	return pub, pub.Close, nil
}

func (t *kafkaTopic) producer(context.Context) (rawProducer, error) {
	client, err := kgo.NewClient(t.b.opts...)
	if err != nil {
		return nil, err
	}
	return kafkaProducer{client}, nil
}

func (t *kafkaTopic) consume(ctx context.Context, seen func(id string)) (<-chan error, error) {
	client, err := kgo.NewClient(append(t.b.opts,
		kgo.ConsumeTopics(t.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	errs := make(chan error, 1)
	go func() {
		defer client.Close()
		for {
			fetches := client.PollFetches(ctx)
			if ctx.Err() != nil {
				close(errs)
				return
			}
			if fetches.IsClientClosed() {
				errs <- errors.New("the Kafka consumer was closed")
				close(errs)
				return
			}
			fetches.EachRecord(func(r *kgo.Record) { seen(kafkapub.RecordID(r)) })
		}
	}()
	return errs, nil
}

func (t *kafkaTopic) drop(ctx context.Context) error {
	resp, err := t.b.admin.DeleteTopic(ctx, t.topic)
	if err == nil {
		err = resp.Err
	}
	return err
}

// kafkaProducer is kgo's asynchronous Produce: every record handed to the
// client at once, then a wait for all the promises.
type kafkaProducer struct{ client *kgo.Client }

func (p kafkaProducer) publish(ctx context.Context, msgs []outbox.Message) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	wg.Add(len(msgs))
	for _, m := range msgs {
		rec := &kgo.Record{Topic: m.Topic, Value: m.Payload,
			Headers: []kgo.RecordHeader{{Key: kafkapub.IDHeader, Value: []byte(m.ID)}}}
		if m.Key != "" {
			rec.Key = []byte(m.Key)
		}
		p.client.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	return first
}

func (p kafkaProducer) close() { p.client.Close() }
