package kafkapub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// TestCloudEventsKafka: a publisher from a URL with cloudevents_source
// produces records that a real Kafka broker stores with the CloudEvents
// binary-mode headers, and the payload as the value.
func TestCloudEventsKafka(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	brokers := kafkaserver.Brokers(t)
	tp := topic(t, brokers, 0)
	cfg, err := kafkapub.ParseURL("kafka://" + strings.Join(brokers, ",") + "?cloudevents_source=urn:app:orders&cloudevents_type_header=event-type")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DeliveryTimeout = testDeliveryTimeout
	pub := dial(t, cfg)
	msgs := []outbox.Message{
		{Topic: tp, Key: "order-42", Payload: []byte(`{"id":42}`),
			Headers: map[string]string{"content-type": "application/json", "event-type": "com.example.order.created"}},
		{Topic: tp, Key: "order-43", Payload: []byte("plain")},
	}
	prepare(t, msgs)
	for i, err := range pub.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	byID := make(map[string]*kgo.Record)
	for _, r := range consumeRecords(t, ctx, brokers, tp, len(msgs)) {
		byID[kafkapub.RecordID(r)] = r
	}
	for i, want := range []map[string]string{
		{"ce_type": "com.example.order.created", "content-type": "application/json"},
		{"ce_type": tp},
	} {
		r := byID[msgs[i].ID]
		if r == nil {
			t.Fatalf("message %d was not read back", i)
		}
		want["ce_specversion"] = "1.0"
		want["ce_id"] = msgs[i].ID
		want["ce_source"] = "urn:app:orders"
		want["ce_time"] = msgs[i].CreatedAt.UTC().Format(time.RFC3339Nano)
		got := make(map[string]string)
		for _, h := range r.Headers {
			got[h.Key] = string(h.Value)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("message %d: header %s = %q; want %q (headers %v)", i, k, got[k], v, got)
			}
		}
		if _, err := time.Parse(time.RFC3339, got["ce_time"]); err != nil {
			t.Errorf("message %d: ce_time %q is not RFC 3339: %v", i, got["ce_time"], err)
		}
		if string(r.Value) != string(msgs[i].Payload) || string(r.Key) != msgs[i].Key {
			t.Errorf("message %d: key %q value %q", i, r.Key, r.Value)
		}
	}
}
