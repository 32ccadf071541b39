package kafkapub

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
)

// headerMap returns the headers of rec by name, and fails t on a name given
// twice.
func headerMap(t *testing.T, rec *kgo.Record) map[string]string {
	t.Helper()
	m := make(map[string]string, len(rec.Headers))
	for _, h := range rec.Headers {
		if _, dup := m[h.Key]; dup {
			t.Errorf("header %q twice in %v", h.Key, rec.Headers)
		}
		m[h.Key] = string(h.Value)
	}
	return m
}

// TestCloudEventsRecord: the headers of the CloudEvents Kafka binding, from
// the message's ID, topic or type header, CreatedAt and content-type, and
// the message's own headers of the same names replaced.
func TestCloudEventsRecord(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 12, 3, 10, 11, 12, 345678000, time.FixedZone("CET", 3600))
	m := outbox.Message{
		ID: "01a23b5c-94bb-7011-9720-ef68effbae46", Topic: "orders.created", Key: "order-42", Payload: []byte(`{"id":42}`),
		CreatedAt: created,
		Headers: map[string]string{
			"Content-Type": "application/json", "event-type": "com.example.order.created",
			"CE_ID": "spoofed", "ce_subject": "order/42", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
	}
	for _, c := range []struct {
		name     string
		cfg      CloudEvents
		wantType string
	}{
		{"type from the topic", CloudEvents{Source: "urn:app:orders"}, "orders.created"},
		{"type from a header", CloudEvents{Source: "urn:app:orders", TypeHeader: "Event-Type"}, "com.example.order.created"},
		{"type header absent", CloudEvents{Source: "urn:app:orders", TypeHeader: "x-type"}, "orders.created"},
	} {
		ce, err := newCloudEvents(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := &Publisher{topic: TopicPrefix("prod."), ce: ce}
		var rec kgo.Record
		if err := p.fill(&rec, make([]kgo.RecordHeader, 0, len(m.Headers)+1+ceHeaders), m); err != nil {
			t.Fatal(err)
		}
		h := headerMap(t, &rec)
		want := map[string]string{
			IDHeader:         m.ID,
			"ce_specversion": "1.0",
			"ce_id":          m.ID,
			"ce_source":      "urn:app:orders",
			"ce_type":        c.wantType,
			"ce_time":        "2026-12-03T09:11:12.345678Z",
			"content-type":   "application/json",
			"ce_subject":     "order/42",
			"event-type":     "com.example.order.created",
			"traceparent":    m.Headers["traceparent"],
		}
		if len(h) != len(want) {
			t.Errorf("%s: headers %v; want %v", c.name, h, want)
		}
		for k, v := range want {
			if h[k] != v {
				t.Errorf("%s: header %s = %q; want %q", c.name, k, h[k], v)
			}
		}
		if rec.Topic != "prod.orders.created" || string(rec.Key) != "order-42" || string(rec.Value) != `{"id":42}` {
			t.Errorf("%s: record %s %q %q", c.name, rec.Topic, rec.Key, rec.Value)
		}
		if rec.Headers[0].Key != IDHeader {
			t.Errorf("%s: first header %q; want %s", c.name, rec.Headers[0].Key, IDHeader)
		}
	}

	// Off: no ce_ header is added, and the message's are left alone.
	p := &Publisher{topic: func(m outbox.Message) string { return m.Topic }}
	var rec kgo.Record
	if err := p.fill(&rec, make([]kgo.RecordHeader, 0, len(m.Headers)+1), m); err != nil {
		t.Fatal(err)
	}
	h := headerMap(t, &rec)
	if _, ok := h["ce_specversion"]; ok || h["CE_ID"] != "spoofed" || h["Content-Type"] != "application/json" || len(h) != len(m.Headers)+1 {
		t.Errorf("CloudEvents off: headers %v", h)
	}
}

func TestCloudEventsConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  CloudEvents
		want string // "" for valid
	}{
		{CloudEvents{}, ""},
		{CloudEvents{Source: "urn:app:orders"}, ""},
		{CloudEvents{Source: "/orders", TypeHeader: "event-type"}, ""},
		{CloudEvents{Source: "https://example.com/orders"}, ""},
		{CloudEvents{TypeHeader: "event-type"}, "TypeHeader is set but Source is empty"},
		{CloudEvents{Source: "my orders"}, "white space"},
		{CloudEvents{Source: "http://[::1"}, "not a URI reference"},
	} {
		_, err := newCloudEvents(c.cfg)
		if c.want == "" && err != nil || c.want != "" && (!errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("newCloudEvents(%+v) = %v; want %q", c.cfg, err, c.want)
		}
	}
	cfg, err := ParseURL("kafka://h:1?cloudevents_source=urn:app:orders&cloudevents_type_header=event-type")
	if err != nil || cfg.CloudEvents != (CloudEvents{Source: "urn:app:orders", TypeHeader: "event-type"}) {
		t.Errorf("ParseURL with cloudevents_ parameters = %+v, %v", cfg.CloudEvents, err)
	}
	for url, want := range map[string]string{
		"kafka://h:1?cloudevents_type_header=event-type": "cloudevents_type_header is given without cloudevents_source",
		"kafka://h:1?cloudevents_source=my%20orders":     `cloudevents_source="my orders" has white space`,
	} {
		if _, err := ParseURL(url); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURL(%q) = %v; want %q", url, err, want)
		}
	}
}
