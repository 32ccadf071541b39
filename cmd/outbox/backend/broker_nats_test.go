package backend

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// TestNATSSubjectTemplate: a broker URL with subject={topic}.{key} and a
// --topic-map publish each message on its mapped topic followed by its
// key, against the real nats-server; a message without a key goes to the
// mapped topic alone.
func TestNATSSubjectTemplate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := natsserver.URL(t)
	stream, prefix := natsserver.Stream(t, url)
	b, err := OpenBroker(ctx, BrokerOptions{
		URL:      url + "?subject={topic}.{key}",
		TopicMap: []string{"orders=" + prefix + ".orders"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	msgs := []outbox.Message{{Topic: "orders", Key: "42"}, {Topic: "orders"}}
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		t.Fatal(err)
	}
	for i, err := range b.Publisher.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	for i, subject := range []string{prefix + ".orders.42", prefix + ".orders"} {
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatalf("message %d: nothing on %s: %v", i, subject, err)
		}
		if id := m.Header.Get("Nats-Msg-Id"); id != msgs[i].ID {
			t.Errorf("%s holds message %s; want %s", subject, id, msgs[i].ID)
		}
	}
}
