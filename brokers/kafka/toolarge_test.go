package kafkapub_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// tooLargeLimit is the max.message.bytes of the topics of the tests below,
// far under the client's batch limit (MaxMessageBytes left at its default
// of about 1 MB): the misconfiguration that lets a batch of small records
// exceed the topic's limit.
const tooLargeLimit = 16 << 10

// tooLargeCase is a batch of 20 keys with 3 records of 2 KiB each, each far
// under the limit and each wave of the keys together over it, and a record
// over the limit alone ("big", first of its key) with a small successor.
type tooLargeCase struct {
	msgs          []outbox.Message
	big, bigAfter int // indexes in msgs
}

func newTooLargeCase(t *testing.T, topic string) tooLargeCase {
	c := tooLargeCase{big: 0, bigAfter: 1}
	c.msgs = append(c.msgs,
		outbox.Message{Topic: topic, Key: "big", Payload: randomBytes(tooLargeLimit + 1024)},
		outbox.Message{Topic: topic, Key: "big", Payload: []byte("after the big one")})
	for i := range 3 {
		for k := range 20 {
			c.msgs = append(c.msgs, outbox.Message{Topic: topic, Key: fmt.Sprint("k", k), Payload: append(fmt.Appendf(nil, "%d:", i), randomBytes(2<<10)...)})
		}
	}
	prepare(t, c.msgs)
	return c
}

// check publishes the case through pub, checks each result (the big
// record's error must say reason), publishes the big record's successor
// again (as the relay does once the big one is dead-lettered), and checks
// with ledger that everything else arrived once, in key order, and the big
// one never.
func (c tooLargeCase) check(t *testing.T, ctx context.Context, pub *kafkapub.Publisher, ledger *conformance.Ledger, reason string) {
	t.Helper()
	res := pub.Publish(ctx, c.msgs)
	for i, err := range res {
		switch i {
		case c.big:
			if !errors.Is(err, outbox.ErrPermanent) || !errors.Is(err, kerr.MessageTooLarge) || !strings.Contains(err.Error(), "too large") ||
				!strings.Contains(err.Error(), reason) {
				t.Errorf("the record over the limit alone: %v; want a permanent MESSAGE_TOO_LARGE saying %q", err, reason)
			}
		case c.bigAfter:
			if !errors.Is(err, outbox.ErrNotAttempted) {
				t.Errorf("the successor of the record over the limit: %v; want ErrNotAttempted", err)
			}
		default:
			if err != nil {
				t.Errorf("%s (key %s), under the limit alone: %v; want it delivered", c.msgs[i].Payload[:2], c.msgs[i].Key, err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if err := pub.Publish(ctx, c.msgs[c.bigAfter:c.bigAfter+1])[0]; err != nil {
		t.Fatalf("the big record's successor, published again: %v", err)
	}
	ledger.Committed(c.msgs[c.bigAfter:]...)
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	rep := ledger.Report()
	t.Logf("ledger: %s", rep)
	if !rep.Clean() || rep.Duplicates != 0 {
		t.Fatalf("ledger: %s", rep)
	}
}

// TestBatchTooLargeIsSplitKafka: on a real broker, a topic whose
// max.message.bytes is far below the client's batch limit refuses with
// MESSAGE_TOO_LARGE whole batches of records that each fit. Publish
// produces those again alone: only the record over the limit on its own
// fails (permanently), every other one arrives, in key order.
func TestBatchTooLargeIsSplitKafka(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	brokers := realBrokers(t)
	// One partition: every record of a wave lands in the same batch.
	tp := kafkaserver.Topic(t, brokers, 1)
	setTopicConfig(t, brokers, tp, "max.message.bytes", strconv.Itoa(tooLargeLimit))
	cfg := testDialConfig(brokers)
	cfg.MaxMessageBytes = 0 // the default, about 1 MB: above the topic's limit

	// Without the publisher, the client's batches of such records are
	// refused as a whole: that is what this test is about.
	scratch := kafkaserver.Topic(t, brokers, 1)
	setTopicConfig(t, brokers, scratch, "max.message.bytes", strconv.Itoa(tooLargeLimit))
	if refused := produceWave(t, ctx, newClient(t, cfg), scratch, 20, 2<<10); refused < 2 {
		t.Fatalf("kgo's batches of 20 records of 2 KiB were refused for %d records; the test needs a batch refused as a whole", refused)
	}

	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, ledger, tp)
	// Judged by the topic's limit, read from the broker.
	newTooLargeCase(t, tp).check(t, ctx, dial(t, cfg), ledger, fmt.Sprintf("max.message.bytes is %d", tooLargeLimit))
}

// TestBatchTooLargeWithoutTheLimit: when the topic's max.message.bytes
// cannot be read (DescribeConfigs refused), every record of a refused batch
// is produced again alone and the broker's answer is final: the same
// outcome. The limit is asked for once.
func TestBatchTooLargeWithoutTheLimit(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := kafkaserver.Fake(t, kfake.NumBrokers(1), kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(tooLargeLimit)}))
	var describes atomic.Int32
	c.ControlKey(int16(kmsg.DescribeConfigs), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		describes.Add(1)
		req := kreq.(*kmsg.DescribeConfigsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, r := range req.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
			rr.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	brokers := c.ListenAddrs()
	tp := kafkaserver.Topic(t, brokers, 1)
	cfg := testDialConfig(brokers)
	cfg.MaxMessageBytes = 0

	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, ledger, tp)
	// Judged by the broker, alone.
	newTooLargeCase(t, tp).check(t, ctx, dial(t, cfg), ledger, "too large on its own")
	if n := describes.Load(); n != 1 {
		t.Errorf("the topic's limit was asked for %d times; want once (a refusal is remembered)", n)
	}
}

// produceWave produces n records of size random bytes to topic at once
// through cl and returns how many were refused as too large.
func produceWave(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, n, size int) int {
	t.Helper()
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range n {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: randomBytes(size)}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if errors.Is(err, kerr.MessageTooLarge) {
				refused.Add(1)
			} else if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	wg.Wait()
	return int(refused.Load())
}
