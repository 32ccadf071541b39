package outbox_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

func TestPrepareRejectsInvalidMessages(t *testing.T) {
	t.Parallel()
	valid := func() outbox.Message { return outbox.Message{Topic: "orders", Key: "42", Payload: []byte("{}")} }
	cases := []struct {
		name   string
		change func(*outbox.Message)
		want   error
	}{
		{"missing topic", func(m *outbox.Message) { m.Topic = "" }, outbox.ErrMissingTopic},
		{"topic with space", func(m *outbox.Message) { m.Topic = "a b" }, outbox.ErrInvalidTopic},
		{"topic with control char", func(m *outbox.Message) { m.Topic = "a\x01" }, outbox.ErrInvalidTopic},
		{"topic too long", func(m *outbox.Message) { m.Topic = strings.Repeat("t", outbox.MaxTopicBytes+1) }, outbox.ErrInvalidTopic},
		{"topic invalid utf-8", func(m *outbox.Message) { m.Topic = "a\xff" }, outbox.ErrInvalidTopic},
		{"id not a uuid", func(m *outbox.Message) { m.ID = "42" }, outbox.ErrInvalidID},
		{"id with bad hex", func(m *outbox.Message) { m.ID = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2g" }, outbox.ErrInvalidID},
		{"key too long", func(m *outbox.Message) { m.Key = strings.Repeat("k", outbox.MaxKeyBytes+1) }, outbox.ErrInvalidKey},
		{"key invalid utf-8", func(m *outbox.Message) { m.Key = "\xff" }, outbox.ErrInvalidKey},
		{"payload over default limit", func(m *outbox.Message) { m.Payload = make([]byte, outbox.DefaultMaxPayloadBytes+1) }, outbox.ErrPayloadTooLarge},
		{"empty header name", func(m *outbox.Message) { m.Headers = map[string]string{"": "v"} }, outbox.ErrInvalidHeader},
		{"header name with colon", func(m *outbox.Message) { m.Headers = map[string]string{"a:b": "v"} }, outbox.ErrInvalidHeader},
		{"header name too long", func(m *outbox.Message) { m.Headers = map[string]string{strings.Repeat("h", 256): "v"} }, outbox.ErrInvalidHeader},
		{"reserved outbox- header", func(m *outbox.Message) { m.Headers = map[string]string{"Outbox-ID": "v"} }, outbox.ErrInvalidHeader},
		{"reserved nats- header", func(m *outbox.Message) { m.Headers = map[string]string{"nats-msg-id": "v"} }, outbox.ErrInvalidHeader},
		{"header value with CR", func(m *outbox.Message) { m.Headers = map[string]string{"h": "a\rb"} }, outbox.ErrInvalidHeader},
		{"header value with NUL", func(m *outbox.Message) { m.Headers = map[string]string{"h": "a\x00b"} }, outbox.ErrInvalidHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs := []outbox.Message{valid(), valid()}
			c.change(&msgs[1])
			err := outbox.Prepare(msgs, outbox.Limits{})
			if !errors.Is(err, c.want) || !errors.Is(err, outbox.ErrInvalidMessage) {
				t.Fatalf("Prepare = %v; want an error matching %v and ErrInvalidMessage", err, c.want)
			}
			var ve *outbox.ValidationError
			if !errors.As(err, &ve) || ve.Index != 1 {
				t.Fatalf("Prepare = %#v; want a *ValidationError for index 1", err)
			}
		})
	}
}

func TestPrepareAcceptsEdgeValues(t *testing.T) {
	t.Parallel()
	msgs := []outbox.Message{
		{Topic: "t"}, // no key, no payload, no headers
		{Topic: strings.Repeat("t", outbox.MaxTopicBytes), Key: strings.Repeat("k", outbox.MaxKeyBytes)},
		{Topic: "t", Payload: make([]byte, 10), Headers: map[string]string{"X-Token_1.2~!#$%&'*+^`|": "any value, even: colons"}},
		{ID: "0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B", Topic: "t"},
	}
	if err := outbox.Prepare(msgs, outbox.Limits{MaxPayloadBytes: 10}); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if msgs[3].ID != "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b" {
		t.Errorf("Prepare kept ID %q; want it lowercased", msgs[3].ID)
	}
}

func TestPrepareRespectsConfiguredLimit(t *testing.T) {
	t.Parallel()
	msgs := []outbox.Message{{Topic: "t", Payload: make([]byte, 11)}}
	if err := outbox.Prepare(msgs, outbox.Limits{MaxPayloadBytes: 10}); !errors.Is(err, outbox.ErrPayloadTooLarge) {
		t.Fatalf("Prepare = %v; want ErrPayloadTooLarge over a 10-byte limit", err)
	}
}

func TestPrepareFillsIDAndCreatedAt(t *testing.T) {
	t.Parallel()
	explicit := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	msgs := []outbox.Message{{Topic: "t"}, {Topic: "t", CreatedAt: explicit}}
	before := time.Now()
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := outbox.IDTime(msgs[0].ID); !ok || msgs[0].ID == msgs[1].ID {
		t.Fatalf("Prepare assigned IDs %q and %q; want two distinct UUIDv7s", msgs[0].ID, msgs[1].ID)
	}
	if got := msgs[0].CreatedAt; got.Before(before.Add(-time.Millisecond)) || got.Location() != time.UTC {
		t.Errorf("CreatedAt = %v; want now, in UTC", got)
	}
	if !msgs[1].CreatedAt.Equal(explicit) {
		t.Errorf("CreatedAt = %v; want the explicit %v kept", msgs[1].CreatedAt, explicit)
	}
}

func TestValidateNeedsID(t *testing.T) {
	t.Parallel()
	m := outbox.Message{Topic: "t"}
	if err := m.Validate(outbox.Limits{}); !errors.Is(err, outbox.ErrMissingID) {
		t.Fatalf("Validate = %v; want ErrMissingID", err)
	}
	m.ID = outbox.NewID()
	if err := m.Validate(outbox.Limits{}); err != nil {
		t.Fatalf("Validate = %v; want nil", err)
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("message too large")
	err := outbox.Permanent(base)
	if !errors.Is(err, outbox.ErrPermanent) || !errors.Is(err, base) || err.Error() != base.Error() {
		t.Fatalf("Permanent(%v) = %v; want it to match ErrPermanent and the cause, with the cause's text", base, err)
	}
	if outbox.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
}
