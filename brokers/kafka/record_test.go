package kafkapub_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// consumeRecords reads n records of topic from its start.
func consumeRecords(t *testing.T, ctx context.Context, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for len(recs) < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records: %v", len(recs), n, ctx.Err())
		}
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

// TestRecordLayout: the topic mapping, key, value and headers of the
// records a Publisher produces, as the package documentation states them.
func TestRecordLayout(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	cluster := kafkaserver.Fake(t)
	brokers := cluster.ListenAddrs()
	prefix := servers.Name(t, "outbox") + "."
	tp := prefix + "user.updated"
	if err := cluster.CreateTopic(tp, 1, nil); err != nil {
		t.Fatal(err)
	}
	cfg := testDialConfig(brokers)
	cfg.Topic = kafkapub.TopicPrefix(prefix)
	pub := dial(t, cfg)

	msgs := []outbox.Message{
		{Topic: "user.updated", Key: "42", Payload: []byte(`{"name":"Ada"}`), Headers: map[string]string{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "content-type": "application/json", "X-Empty": "",
		}},
		{Topic: "user.updated", Payload: []byte("no key")},
		{Topic: "user.updated", Key: "42"}, // no payload: a tombstone
	}
	prepare(t, msgs)
	for i, err := range pub.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	recs := consumeRecords(t, ctx, brokers, tp, len(msgs))
	slices.SortFunc(recs, func(a, b *kgo.Record) int { return int(a.Offset - b.Offset) })

	r := recs[0]
	if string(r.Key) != "42" || string(r.Value) != `{"name":"Ada"}` || kafkapub.RecordID(r) != msgs[0].ID {
		t.Errorf("record 0: key %q value %q id %q", r.Key, r.Value, kafkapub.RecordID(r))
	}
	var names []string
	for _, h := range r.Headers {
		names = append(names, h.Key)
	}
	if want := []string{kafkapub.IDHeader, "X-Empty", "content-type", "traceparent"}; !slices.Equal(names, want) {
		t.Errorf("record 0 headers %q; want %q (the ID first, then by name)", names, want)
	}
	if r.Headers[3].Value == nil || string(r.Headers[3].Value) != msgs[0].Headers["traceparent"] {
		t.Errorf("traceparent = %q", r.Headers[3].Value)
	}
	if r := recs[1]; r.Key != nil || string(r.Value) != "no key" || kafkapub.RecordID(r) != msgs[1].ID {
		t.Errorf("record 1: key %q (want none) value %q id %q", r.Key, r.Value, kafkapub.RecordID(r))
	}
	if r := recs[2]; string(r.Key) != "42" || r.Value != nil {
		t.Errorf("record 2: key %q value %q; want a tombstone of key 42", r.Key, r.Value)
	}
	if id := kafkapub.RecordID(&kgo.Record{}); id != "" {
		t.Errorf("RecordID of a record without the header = %q", id)
	}
}

// TestTopicMappedToNothingIsPermanent: a Config.Topic that returns "" fails
// the message permanently, without contacting a broker.
func TestTopicMappedToNothingIsPermanent(t *testing.T) {
	t.Parallel()
	cfg := testDialConfig([]string{"127.0.0.1:1"})
	cfg.Topic = func(m outbox.Message) string {
		if m.Key == "ok" {
			return m.Topic
		}
		return ""
	}
	pub := dial(t, cfg)
	msgs := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "other"}}
	prepare(t, msgs)
	res := pub.Publish(testContext(t), msgs)
	if !errors.Is(res[0], outbox.ErrPermanent) || !errors.Is(res[1], outbox.ErrNotAttempted) || !errors.Is(res[2], outbox.ErrPermanent) {
		t.Fatalf("results = %v; want permanent, not attempted, permanent", res)
	}
}

// TestBatchesStayUnderMaxMessageBytes: with MaxMessageBytes equal to the
// topic's max.message.bytes, many records that fit on their own never
// form a batch the broker refuses.
func TestBatchesStayUnderMaxMessageBytes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const limit = 8 << 10
	brokers := fakeBrokers(t)
	tp := topic(t, brokers, limit)
	cfg := testDialConfig(brokers)
	cfg.MaxMessageBytes = limit
	pub := dial(t, cfg)
	var msgs []outbox.Message
	for i := range 400 {
		key := ""
		if i%2 == 0 {
			key = string(rune('a' + i%26))
		}
		msgs = append(msgs, outbox.Message{Topic: tp, Key: key, Payload: randomBytes(700 + i%300)})
	}
	msgs = append(msgs, outbox.Message{Topic: tp, Key: "edge", Payload: randomBytes(limit - 200)})
	prepare(t, msgs)
	for i, err := range pub.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("message %d of %d bytes: %v", i, len(msgs[i].Payload), err)
		}
	}
}
