package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	outbox "github.com/txoutbox/txoutbox/core"
)

// BrokerOptions say which broker to publish to. Commands bind them to flags
// with [BrokerOptions.AddFlags].
type BrokerOptions struct {
	// URL is the broker: kafka://host:9092,host2:9092?… or nats://host:4222?….
	URL string
	// TopicMap maps outbox topics to broker topics (subjects), as FROM=TO.
	TopicMap []string
	// TopicPrefix is put before every (mapped) topic, as it is: include
	// the separator ("prod." or "prod-").
	TopicPrefix string

	// Source and TopicMapSource name where URL and TopicMap came from,
	// for error messages. Defaults "--broker" and "--topic-map".
	Source, TopicMapSource string
	// Logger receives the publishers' rare events (NATS reconnects, stream
	// creation). Default slog.Default().
	Logger *slog.Logger
}

// AddFlags binds --broker, --topic-map and --topic-prefix to o.
func (o *BrokerOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.URL, "broker", "", "broker URL: kafka://host:9092,host2:9092?tls=true&sasl=scram-sha-512&user=…&password=… or nats://host:4222?creds=…")
	fs.StringSliceVar(&o.TopicMap, "topic-map", nil, "publish outbox topic FROM to broker topic/subject TO, as FROM=TO (repeatable, or comma-separated)")
	fs.StringVar(&o.TopicPrefix, "topic-prefix", "", `prefix put before every broker topic/subject, separator included (e.g. "prod.")`)
}

func (o BrokerOptions) source() string {
	if o.Source == "" {
		return "--broker"
	}
	return o.Source
}

// Broker kinds, as [Broker.Kind] names them (also the OpenTelemetry
// messaging.system values).
const (
	Kafka = "kafka"
	NATS  = "nats"
)

var brokerExamples = map[string]string{
	Kafka: "kafka://kafka-1:9092,kafka-2:9092?tls=true&sasl=scram-sha-512&user=relay&password=secret",
	NATS:  "nats://nats-1:4222?creds=/etc/outbox/relay.creds",
}

// Broker is an opened publisher.
type Broker struct {
	// Publisher is the adapter, or a wrapper of it (see [Broker.Ping]).
	Publisher outbox.Publisher
	// Kind is Kafka or NATS.
	Kind string
	// Display names the broker for people and logs, secrets hidden.
	Display string
	// Target is the broker's servers and user, for error messages.
	Target Target

	close func()
}

// Close closes the broker connections.
func (b *Broker) Close() {
	if b.close != nil {
		b.close()
		b.close = nil
	}
}

// Ping checks that the broker answers. It finds an outbox.Pinger in the
// publisher or, through Unwrap methods, in the publishers it wraps (the
// tracing wrapper of contrib/otel has one); a broker that cannot tell is
// assumed to answer.
func (b *Broker) Ping(ctx context.Context) error {
	var p any = b.Publisher
	for p != nil {
		if pinger, ok := p.(outbox.Pinger); ok {
			return pinger.Ping(ctx)
		}
		u, ok := p.(interface{ Unwrap() outbox.Publisher })
		if !ok {
			return nil
		}
		p = u.Unwrap()
	}
	return nil
}

// OpenBroker opens the publisher that o describes. A URL that cannot be used
// is a *[URLError]. It does not wait for the broker: a publisher whose broker
// is down reports outbox.ErrUnavailable, and the relay waits and retries.
func OpenBroker(ctx context.Context, o BrokerOptions) (*Broker, error) {
	raw := strings.TrimSpace(o.URL)
	if raw == "" {
		return nil, &URLError{Source: o.source(), Reason: "no broker given; set the flag or OUTBOX_BROKER_URL", Example: brokerExamples[Kafka]}
	}
	scheme, _, _ := strings.Cut(raw, "://")
	kind := ""
	switch strings.ToLower(scheme) {
	case "kafka":
		kind = Kafka
	case "nats", "tls":
		kind = NATS
	default:
		reason := fmt.Sprintf("unknown broker %q; use kafka:// or nats://", scheme)
		if !strings.Contains(raw, "://") {
			reason = "not a URL; the broker is given as kafka://host:9092,… or nats://host:4222"
		}
		return nil, &URLError{Source: o.source(), URL: Redact(raw), Reason: reason, Example: brokerExamples[Kafka]}
	}
	bad := func(err error) error {
		reason := strings.TrimPrefix(errorWithoutSecret(err, raw).Error(), outbox.ErrInvalidConfig.Error()+": ")
		return &URLError{Source: o.source(), URL: Redact(raw), Reason: reason, Example: brokerExamples[kind]}
	}
	mapSource := o.TopicMapSource
	if mapSource == "" {
		mapSource = "--topic-map"
	}
	mapTopic, err := topicMapping(o.TopicMap, o.TopicPrefix, mapSource)
	if err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	switch kind {
	case Kafka:
		dc, err := kafkapub.ParseURL(raw)
		if err != nil {
			return nil, bad(err)
		}
		if mapTopic != nil {
			dc.Topic = func(m outbox.Message) string { return mapTopic(m.Topic) }
		}
		pub, err := kafkapub.Dial(dc) // does not contact the brokers
		if err != nil {
			return nil, bad(err)
		}
		target := Target{System: systemKafka, Addr: joinAddrs(dc.Brokers), User: dc.SASL.User, URL: Redact(raw)}
		return &Broker{Publisher: pub, Kind: Kafka, Display: Redact(raw), Target: target, close: pub.Close}, nil
	default:
		conn, cfg, err := natspub.ParseURL(raw)
		if err != nil {
			return nil, bad(err)
		}
		if mapTopic != nil {
			inner := cfg.Subject
			cfg.Subject = func(m outbox.Message) string {
				m.Topic = mapTopic(m.Topic)
				if inner != nil {
					return inner(m)
				}
				return m.Topic
			}
		}
		cfg.Logger = logger
		target := Target{System: systemNATS, Addr: joinAddrs(urlHosts(raw)), User: conn.User, URL: Redact(raw)}
		pub, err := natspub.Connect(ctx, conn, cfg) // returns while the server is down
		if err != nil {
			if errors.Is(err, outbox.ErrInvalidConfig) {
				return nil, bad(err)
			}
			return nil, &TargetError{Target: target, Err: fmt.Errorf("NATS at %s: %w", Redact(raw), err)}
		}
		return &Broker{Publisher: pub, Kind: NATS, Display: Redact(raw), Target: target, close: func() { _ = pub.Close() }}, nil
	}
}

// topicMapping returns the mapping --topic-map and --topic-prefix describe,
// or nil when they say nothing.
func topicMapping(pairs []string, prefix, source string) (func(string) string, error) {
	if len(pairs) == 0 && prefix == "" {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		from, to, ok := strings.Cut(p, "=")
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if !ok || from == "" || to == "" {
			return nil, &URLError{Source: source, URL: p, Reason: "want FROM=TO, an outbox topic and the broker topic to publish it to",
				Example: "orders=prod.orders"}
		}
		if prev, dup := m[from]; dup && prev != to {
			return nil, &URLError{Source: source, URL: p, Reason: fmt.Sprintf("topic %q is already mapped to %q", from, prev)}
		}
		m[from] = to
	}
	return func(topic string) string {
		if to, ok := m[topic]; ok {
			topic = to
		}
		return prefix + topic
	}, nil
}
