package natspub

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// TestCloudEventsMessage: the headers of the CloudEvents NATS binding, from
// the message's ID, topic or type header, CreatedAt and content-type,
// percent-encoded where the binding says; the message's own headers of the
// same names replaced.
func TestCloudEventsMessage(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 12, 3, 10, 11, 12, 345678000, time.FixedZone("CET", 3600))
	m := outbox.Message{
		ID: "01a23b5c-94bb-7011-9720-ef68effbae46", Topic: "orders.created", Key: "order-42", Payload: []byte(`{"id":42}`),
		CreatedAt: created,
		Headers: map[string]string{
			"Content-Type": "application/json; charset=utf-8", "event-type": `com.example.order "créé"`,
			"CE-ID": "spoofed", "ce-subject": "order/42", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
	}
	for _, c := range []struct {
		name     string
		cfg      CloudEvents
		wantType string
	}{
		{"type from the topic", CloudEvents{Source: "urn:app:orders"}, "orders.created"},
		{"type from a header", CloudEvents{Source: "urn:app:orders", TypeHeader: "Event-Type"}, "com.example.order%20%22cr%C3%A9%C3%A9%22"},
		{"type header absent", CloudEvents{Source: "urn:app:orders", TypeHeader: "x-type"}, "orders.created"},
	} {
		cfg, err := Config{Subject: SubjectPrefix("prod"), CloudEvents: c.cfg}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		p := &Publisher{cfg: cfg}
		msg, err := p.message(&m)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			HeaderMsgID:          m.ID,
			HeaderKey:            "order-42",
			"ce-specversion":     "1.0",
			"ce-id":              m.ID,
			"ce-source":          "urn:app:orders",
			"ce-type":            c.wantType,
			"ce-time":            "2026-12-03T09:11:12.345678Z",
			"ce-datacontenttype": "application/json;%20charset=utf-8",
			"Content-Type":       "application/json; charset=utf-8",
			"ce-subject":         "order/42",
			"event-type":         m.Headers["event-type"],
			"traceparent":        m.Headers["traceparent"],
		}
		if len(msg.Header) != len(want) {
			t.Errorf("%s: headers %v; want %v", c.name, msg.Header, want)
		}
		for k, v := range want {
			if got := msg.Header[k]; len(got) != 1 || got[0] != v {
				t.Errorf("%s: header %s = %q; want %q", c.name, k, got, v)
			}
		}
		if msg.Subject != "prod.orders.created" || string(msg.Data) != `{"id":42}` {
			t.Errorf("%s: subject %s data %q", c.name, msg.Subject, msg.Data)
		}
	}

	// Off: no ce- header is added, and the message's are left alone.
	p := &Publisher{}
	msg, err := p.message(&m)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.Header["ce-specversion"]; ok || msg.Header.Get("CE-ID") != "spoofed" || len(msg.Header) != len(m.Headers)+2 {
		t.Errorf("CloudEvents off: headers %v", msg.Header)
	}
}

func TestPercentEncode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"urn:app:orders":           "urn:app:orders",
		"Euro € 😀":                 "Euro%20%E2%82%AC%20%F0%9F%98%80", // the binding's own example
		`say "100%"`:               "say%20%22100%25%22",
		"tab\tand\x7f":             "tab%09and%7F",
		"application/json;q=0.5~!": "application/json;q=0.5~!",
	} {
		if got := percentEncode(in); got != want {
			t.Errorf("percentEncode(%q) = %q; want %q", in, got, want)
		}
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
		{CloudEvents{TypeHeader: "event-type"}, "Config.CloudEvents.TypeHeader is set but Source is empty"},
		{CloudEvents{Source: "my orders"}, "white space"},
		{CloudEvents{Source: "http://[::1"}, "not a URI reference"},
	} {
		_, err := Config{CloudEvents: c.cfg}.withDefaults()
		if c.want == "" && err != nil || c.want != "" && (!errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Config{CloudEvents: %+v} = %v; want %q", c.cfg, err, c.want)
		}
	}
	_, cfg, err := ParseURL("nats://h:4222?cloudevents_source=urn:app:orders&cloudevents_type_header=event-type")
	if err != nil || cfg.CloudEvents != (CloudEvents{Source: "urn:app:orders", TypeHeader: "event-type"}) {
		t.Errorf("ParseURL with cloudevents_ parameters = %+v, %v", cfg.CloudEvents, err)
	}
	for url, want := range map[string]string{
		"nats://h:4222?cloudevents_type_header=event-type": "cloudevents_type_header is given without cloudevents_source",
		"nats://h:4222?cloudevents_source=my%20orders":     `cloudevents_source="my orders" has white space`,
	} {
		if _, _, err := ParseURL(url); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURL(%q) = %v; want %q", url, err, want)
		}
	}
}

// TestCloudEventsOnServer: a publisher from a URL with cloudevents_source
// publishes messages that the real nats-server stores with the CloudEvents
// binary-mode headers, and the payload as the data.
func TestCloudEventsOnServer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := natsserver.URL(t)
	stream, prefix := natsserver.Stream(t, url)
	conn, cfg, err := ParseURL(url + "?cloudevents_source=urn:app:orders&cloudevents_type_header=event-type")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = discardLogger()
	pub, err := Connect(ctx, conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	msgs := prepared(t,
		outbox.Message{Topic: prefix + ".orders", Key: "order-42", Payload: []byte(`{"id":42}`),
			Headers: map[string]string{"content-type": "application/json", "event-type": "com.example.order.created"}},
		outbox.Message{Topic: prefix + ".orders", Key: "order-43", Payload: []byte("plain")},
	)
	for i, err := range pub.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	// Stream order is per key only: read both, match them by ID.
	byID := make(map[string]*jetstream.RawStreamMsg)
	for seq := uint64(1); seq <= 2; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		byID[nats.Header(raw.Header).Get(HeaderMsgID)] = raw
	}
	for i, want := range []map[string]string{
		{"ce-type": "com.example.order.created", "ce-datacontenttype": "application/json"},
		{"ce-type": prefix + ".orders"},
	} {
		raw := byID[msgs[i].ID]
		if raw == nil {
			t.Fatalf("message %d is not in the stream", i)
		}
		h := nats.Header(raw.Header)
		want["ce-specversion"] = "1.0"
		want["ce-id"] = msgs[i].ID
		want["ce-source"] = "urn:app:orders"
		want["ce-time"] = msgs[i].CreatedAt.UTC().Format(time.RFC3339Nano)
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("message %d: header %s = %q; want %q (headers %v)", i, k, h.Get(k), v, h)
			}
		}
		if string(raw.Data) != string(msgs[i].Payload) {
			t.Errorf("message %d: data %q", i, raw.Data)
		}
	}
}
