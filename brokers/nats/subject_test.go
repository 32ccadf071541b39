package natspub

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

func TestSubjectTemplate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		template, topic, key, want string
	}{
		{"{topic}.{key}", "orders", "42", "orders.42"},
		{"{topic}.{key}", "orders.created", "42", "orders.created.42"},
		{"{topic}.{key}", "orders", "", "orders"}, // no key: no key token
		{"{key}.{topic}", "orders", "", "orders"},
		{"prod.{topic}.{key}.v1", "orders", "42", "prod.orders.42.v1"},
		{"prod.{topic}.{key}.v1", "orders", "", "prod.orders.v1"},
		{"events-{topic}.by-key.{key}", "orders", "a", "events-orders.by-key.a"},
		{"{topic}.{key}", "orders", "user.7", "orders.user.7"}, // a key with dots spans tokens
		{"all.orders", "orders", "42", "all.orders"},           // no placeholder: one subject
	} {
		fn, err := SubjectTemplate(c.template)
		if err != nil {
			t.Errorf("SubjectTemplate(%q): %v", c.template, err)
			continue
		}
		if got := fn(outbox.Message{Topic: c.topic, Key: c.key}); got != c.want {
			t.Errorf("SubjectTemplate(%q) maps topic %q key %q to %q; want %q", c.template, c.topic, c.key, got, c.want)
		}
	}

	for _, c := range []struct{ template, want string }{
		{"", "empty"},
		{"{topic}.{id}", "unknown placeholder {id}"},
		{"{Topic}.{key}", "unknown placeholder {Topic}"},
		{"{topic}.{key", "brace"},
		{"{topic}}.x", "brace"},
		{"{topic}.user-{key}", "whole token"},
		{"{key}", "a message without a key would have no subject"},
		{"{topic}..{key}", "empty token"},
		{"{topic}.*", "wildcard"},
		{"{topic}.>", "wildcard"},
		{"{topic} {key}", "whole token"},
		{"a b.{topic}", "white space"},
	} {
		_, err := SubjectTemplate(c.template)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SubjectTemplate(%q) = %v; want ErrInvalidConfig saying %q", c.template, err, c.want)
		}
	}
}

func TestParseURLSubjectTemplate(t *testing.T) {
	t.Parallel()
	_, cfg, err := ParseURL("nats://h:4222?subject={topic}.{key}")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Subject(outbox.Message{Topic: "orders", Key: "42"}); got != "orders.42" {
		t.Errorf("subject={topic}.{key} maps orders/42 to %q", got)
	}
	// Percent-encoded braces are what a URL library makes of them.
	if _, cfg, err = ParseURL("nats://h:4222?subject=%7Btopic%7D.%7Bkey%7D"); err != nil || cfg.Subject(outbox.Message{Topic: "a", Key: "b"}) != "a.b" {
		t.Errorf("percent-encoded template: %v", err)
	}
	for _, c := range []struct{ url, want string }{
		{"nats://h:4222?subject={topic}.{id}", `subject="{topic}.{id}": unknown placeholder {id}; the placeholders are {topic} and {key}`},
		{"nats://h:4222?subject={topic}.{key}&subject_prefix=prod", "subject and subject_prefix are both given"},
		{"nats://h:4222?subject=", `subject="": the template is empty`},
	} {
		_, _, err := ParseURL(c.url)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURL(%q) = %v; want ErrInvalidConfig saying %q", c.url, err, c.want)
		}
	}
}

// TestSubjectTemplateOnServer publishes through a Publisher built from a
// URL with a subject template, as the outbox command does, and reads the
// subjects the stream stored: the key's token, and none for a message
// without a key.
func TestSubjectTemplateOnServer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := natsserver.URL(t)
	stream, prefix := natsserver.Stream(t, url)
	conn, cfg, err := ParseURL(url + "?subject=" + prefix + ".{topic}.{key}")
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
		outbox.Message{Topic: "orders", Key: "42", Payload: []byte("a")},
		outbox.Message{Topic: "orders", Key: "42", Payload: []byte("b")},
		outbox.Message{Topic: "orders", Key: "7", Payload: []byte("c")},
		outbox.Message{Topic: "orders", Payload: []byte("d")},
	)
	for i, err := range pub.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	// Stream order is per key only: match the messages by ID.
	subjects := make(map[string]string)
	for _, r := range readStream(t, ctx, url, stream) {
		subjects[r.ID] = r.Topic
	}
	want := []string{prefix + ".orders.42", prefix + ".orders.42", prefix + ".orders.7", prefix + ".orders"}
	if len(subjects) != len(want) {
		t.Fatalf("stream holds %d messages; want %d", len(subjects), len(want))
	}
	for i, m := range msgs {
		if subjects[m.ID] != want[i] {
			t.Errorf("message %d (key %q) on %q; want %q", i, m.Key, subjects[m.ID], want[i])
		}
	}

	// A consumer of one key sees only that key's messages.
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.GetLastMsgForSubject(ctx, prefix+".orders.42")
	if err != nil || string(last.Data) != "b" {
		t.Fatalf("last message of key 42: %v, %v; want payload b", last, err)
	}
}
