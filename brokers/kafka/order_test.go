package kafkapub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// failProduce makes the cluster answer the first Produce request that
// carries a record with payload marker: fatal for the partition holding
// it, retriable (NOT_ENOUGH_REPLICAS, nothing written) for the request's
// other partitions. The request is not applied. Records must be produced
// without compression so that the marker can be seen in the batch bytes.
// hold, when not nil, delays the answer until it is closed. The returned
// counter tells how many requests were answered this way (0 or 1).
func failProduce(c *kfake.Cluster, marker []byte, fatal *kerr.Error, hold <-chan struct{}) *atomic.Int32 {
	var hits atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.ProduceRequest)
		found := false
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				found = found || bytes.Contains(p.Records, marker)
			}
		}
		if !found {
			return nil, nil, false // the cluster handles it as usual
		}
		if hold != nil {
			c.SleepControl(func() { <-hold })
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.BaseOffset = -1
				rp.ErrorCode = kerr.NotEnoughReplicas.Code
				if bytes.Contains(p.Records, marker) {
					rp.ErrorCode = fatal.Code
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		hits.Add(1)
		return resp, nil, true
	})
	return &hits
}

// uncompressed is the client option that lets failProduce see payloads.
var uncompressed = kgo.ProducerBatchCompression(kgo.NoCompression())

// TestOrderUnderInjectedProduceError answers the Produce request carrying
// the third of six messages of key "a" with an error, in the middle of a
// batch of several keys: the two before it are delivered, it fails, the
// three after it are not attempted and never reach the broker; every other
// key keeps the same shape (a delivered prefix, then at most one failure
// and nothing after it on the broker).
func TestOrderUnderInjectedProduceError(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	cluster := kafkaserver.Fake(t)
	brokers := cluster.ListenAddrs()
	tp := topic(t, brokers, 0)
	pub, err := kafkapub.New(newClient(t, testDialConfig(brokers), uncompressed), kafkapub.Config{})
	if err != nil {
		t.Fatal(err)
	}

	marker := []byte("a-2-fails")
	var msgs []outbox.Message
	for i := range 6 {
		payload := fmt.Appendf(nil, "a-%d", i)
		if i == 2 {
			payload = marker
		}
		msgs = append(msgs, outbox.Message{Topic: tp, Key: "a", Payload: payload})
		for _, k := range []string{"b", "c", "d"} {
			if i < 4 {
				msgs = append(msgs, outbox.Message{Topic: tp, Key: k, Payload: fmt.Appendf(nil, "%s-%d", k, i)})
			}
		}
		msgs = append(msgs, outbox.Message{Topic: tp, Payload: fmt.Appendf(nil, "unkeyed-%d", i)})
	}
	prepare(t, msgs)
	hits := failProduce(cluster, marker, kerr.InvalidRecord, nil)

	res := pub.Publish(ctx, msgs)
	if hits.Load() != 1 {
		t.Fatalf("the injected error answered %d requests, want 1", hits.Load())
	}
	var a []error
	for i, m := range msgs {
		if m.Key == "a" {
			a = append(a, res[i])
		}
	}
	if a[0] != nil || a[1] != nil {
		t.Fatalf("a-0, a-1 = %v, %v; want nil", a[0], a[1])
	}
	if !errors.Is(a[2], kerr.InvalidRecord) || !errors.Is(a[2], outbox.ErrPermanent) {
		t.Fatalf("a-2 = %v; want the injected INVALID_RECORD, permanent", a[2])
	}
	for i := 3; i < 6; i++ {
		if !errors.Is(a[i], outbox.ErrNotAttempted) {
			t.Fatalf("a-%d = %v; want ErrNotAttempted after a-2 failed", i, a[i])
		}
	}
	checkStopsAtFirstFailure(t, ctx, brokers, tp, pub, msgs, res)
}

// checkStopsAtFirstFailure checks that, for every key, the results are a
// run of successes, then at most one failure followed only by
// ErrNotAttempted, and that the broker holds exactly the successes of the
// key, in order. It publishes a sentinel per key to know when everything
// that could arrive has arrived.
func checkStopsAtFirstFailure(t *testing.T, ctx context.Context, brokers []string, tp string, pub *kafkapub.Publisher, msgs []outbox.Message, res []error) {
	t.Helper()
	want := make(map[string][]string) // key -> payloads that must be on the broker
	failed := make(map[string]bool)
	for i, m := range msgs {
		if m.Key == "" {
			continue
		}
		switch err := res[i]; {
		case failed[m.Key] && !errors.Is(err, outbox.ErrNotAttempted):
			t.Fatalf("message %q after a failure of its key: %v; want ErrNotAttempted", m.Payload, err)
		case failed[m.Key]:
		case err != nil:
			failed[m.Key] = true
		default:
			want[m.Key] = append(want[m.Key], string(m.Payload))
		}
	}
	var sentinels []outbox.Message
	for k := range failed {
		sentinels = append(sentinels, outbox.Message{Topic: tp, Key: k, Payload: []byte("sentinel-" + k)})
	}
	for k := range want {
		if !failed[k] {
			sentinels = append(sentinels, outbox.Message{Topic: tp, Key: k, Payload: []byte("sentinel-" + k)})
		}
	}
	prepare(t, sentinels)
	for i, err := range pub.Publish(ctx, sentinels) {
		if err != nil {
			t.Fatalf("sentinel %q: %v", sentinels[i].Payload, err)
		}
	}
	got := make(map[string][]string)
	var mu sync.Mutex
	seen := make(chan struct{}, 1)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consumer(brokers)(cctx, []string{tp}, func(r conformance.Received) {
			if r.Key == "" {
				return
			}
			mu.Lock()
			got[r.Key] = append(got[r.Key], string(r.Payload))
			mu.Unlock()
			select {
			case seen <- struct{}{}:
			default:
			}
		})
	}()
	defer func() { cancel(); <-done }()
	for {
		mu.Lock()
		complete := true
		for _, s := range sentinels {
			complete = complete && slices.Contains(got[s.Key], string(s.Payload))
		}
		mu.Unlock()
		if complete {
			break
		}
		select {
		case <-seen:
		case <-ctx.Done():
			t.Fatal("the sentinels never arrived")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range sentinels {
		w := append(slices.Clone(want[s.Key]), string(s.Payload))
		if !slices.Equal(got[s.Key], w) {
			t.Errorf("key %s on the broker: %q; want %q", s.Key, got[s.Key], w)
		}
	}
}

// TestFranzGoFailureSemantics pins down what kgo does after a record of a
// partition fails, which is why Publish waits for each message of a key
// before producing the next. If kgo changes, these tests say so.
func TestFranzGoFailureSemantics(t *testing.T) {
	t.Parallel()

	// Records buffered behind a failed batch of their partition fail with
	// it: kgo fails everything buffered in the partition, so that the
	// idempotent sequence has no gap.
	t.Run("BufferedBehindAFailureFailWithIt", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		cluster := kafkaserver.Fake(t)
		brokers := cluster.ListenAddrs()
		tp := topic(t, brokers, 0)
		cl := newClient(t, testDialConfig(brokers), uncompressed)
		hold := make(chan struct{})
		hits := failProduce(cluster, []byte("r-0"), kerr.InvalidRecord, hold)

		var wg sync.WaitGroup
		errs := make([]error, 5)
		for i := range errs {
			wg.Add(1)
			rec := &kgo.Record{Topic: tp, Key: []byte("k"), Value: fmt.Appendf(nil, "r-%d", i)}
			cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { errs[i] = err; wg.Done() })
		}
		close(hold) // every record is buffered before the failure is answered
		wg.Wait()
		if hits.Load() != 1 {
			t.Fatalf("the injected error answered %d requests, want 1", hits.Load())
		}
		for i, err := range errs {
			if !errors.Is(err, kerr.InvalidRecord) {
				t.Errorf("record %d: %v; want INVALID_RECORD like the first", i, err)
			}
		}
	})

	// A record produced once the failure was handled goes through: kgo
	// remembers nothing about the failure. A publisher that produced a
	// key's messages without waiting could thus deliver a successor of a
	// failed message whenever the failure is handled between two Produce
	// calls.
	t.Run("ProducedAfterAFailureGoesThrough", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		cluster := kafkaserver.Fake(t)
		brokers := cluster.ListenAddrs()
		tp := topic(t, brokers, 0)
		cl := newClient(t, testDialConfig(brokers), uncompressed)
		failProduce(cluster, []byte("first"), kerr.InvalidRecord, nil)

		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: tp, Key: []byte("k"), Value: []byte("first")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
			t.Fatalf("first record: %v; want INVALID_RECORD", err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: tp, Key: []byte("k"), Value: []byte("second")}).FirstErr(); err != nil {
			t.Fatalf("second record: %v; kgo now holds back records after a failure, Publish could pipeline a key", err)
		}
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func prepare(t testing.TB, msgs []outbox.Message) {
	t.Helper()
	if err := outbox.Prepare(msgs, outbox.Limits{MaxPayloadBytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
}
