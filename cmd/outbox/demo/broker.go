package demo

import (
	"context"
	"log/slog"
	"strings"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/conformance/ledger"
)

// broker is the broker side of a run.
type broker struct {
	// display describes the broker for the header.
	display string
	// url is how publishers reach it, as `outbox relay --broker` takes it
	// (relay processes get it in OUTBOX_BROKER_URL: it may hold secrets).
	url string
	// topic is the topic (NATS subject) the service writes to.
	topic string
	// jetStream is set for NATS JetStream, which drops duplicates.
	jetStream bool
	// consume reads every message of the topic from the start, calling fn
	// for each, until ctx ends.
	consume func(ctx context.Context, fn func(ledger.Received)) error
	// close deletes what the demo created on a real broker and stops an
	// embedded one.
	close func(ctx context.Context) error
}

// demoTopic is the topic of the events, on an embedded broker.
const demoTopic = "user.updated"

// brokerExamples are shown with a --broker that cannot be used.
const brokerExamples = `use "nats" (embedded NATS), "kafka" (embedded kfake), nats://host:4222 or kafka://host:9092`

// openBroker starts or reaches the broker cfg.Broker names and creates the
// demo's stream or topic on it.
func openBroker(ctx context.Context, cfg Config, dir, run string, log *slog.Logger) (*broker, error) {
	raw := cfg.Broker
	kind, err := brokerKind(raw)
	if err != nil {
		return nil, err
	}
	switch {
	case raw == EmbeddedNATS:
		return startNATS(ctx, dir, log)
	case raw == EmbeddedKafka:
		return startKafka(ctx)
	}
	topic := "outbox-demo-" + run + "." + demoTopic
	if kind == EmbeddedNATS {
		return openNATS(ctx, raw, nil, "OUTBOX_DEMO_"+strings.ToUpper(run), topic, log)
	}
	return openKafka(ctx, raw, nil, topic)
}

// brokerKind tells the broker a --broker names: "nats" or "kafka".
func brokerKind(raw string) (string, error) {
	scheme, _, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		if raw == EmbeddedNATS || raw == EmbeddedKafka {
			return raw, nil
		}
		return "", invalid("--broker %q: unknown broker; %s", backend.Redact(raw), brokerExamples)
	}
	switch strings.ToLower(scheme) {
	case "nats", "tls":
		return EmbeddedNATS, nil
	case "kafka":
		return EmbeddedKafka, nil
	}
	return "", invalid("--broker %s: unknown broker %q; %s", backend.Redact(raw), scheme, brokerExamples)
}
