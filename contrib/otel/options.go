package outboxotel

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Option configures [WrapPublisher].
type Option interface {
	apply(*config)
}

// PropagationOption configures [Inject], [InjectAll] and [Extract]. Every
// PropagationOption is also an [Option], so the same value can configure
// both sides.
type PropagationOption interface {
	Option
	propagationOption()
}

type config struct {
	propagator     propagation.TextMapPropagator
	tracerProvider trace.TracerProvider
	spanName       func(outbox.Message) string
	system         string
	attributes     []attribute.KeyValue
}

func newConfig[O Option](opts []O) config {
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	if c.propagator == nil {
		c.propagator = propagation.TraceContext{}
	}
	if c.tracerProvider == nil {
		c.tracerProvider = otel.GetTracerProvider()
	}
	if c.spanName == nil {
		c.spanName = defaultSpanName
	}
	return c
}

// defaultSpanName follows the messaging semantic conventions:
// "{operation} {destination}".
func defaultSpanName(m outbox.Message) string { return "send " + m.Topic }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type propagationOptionFunc func(*config)

func (f propagationOptionFunc) apply(c *config)  { f(c) }
func (propagationOptionFunc) propagationOption() {}

// WithPropagator sets the propagator that writes and reads the trace
// context in message headers. The default is W3C Trace Context alone
// ([propagation.TraceContext]), whatever the global propagator is. To
// follow the global one, pass otel.GetTextMapPropagator(); to carry
// baggage too, pass propagation.NewCompositeTextMapPropagator(
// propagation.TraceContext{}, propagation.Baggage{}). Use the same
// propagator at enqueue and in the relay. A nil p keeps the default.
func WithPropagator(p propagation.TextMapPropagator) PropagationOption {
	return propagationOptionFunc(func(c *config) { c.propagator = p })
}

// WithTracerProvider sets the tracer provider of the publish spans. The
// default is the global one (otel.GetTracerProvider()), looked up when
// [WrapPublisher] is called. A nil tp keeps the default.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tracerProvider = tp })
}

// WithSpanName sets how a publish span is named. The default is
// "send <topic>", as the messaging semantic conventions name a send
// operation; when topics are many and generated (a NATS subject per
// customer, say), name spans after a fixed string or a topic pattern
// instead. A nil name keeps the default.
func WithSpanName(name func(msg outbox.Message) string) Option {
	return optionFunc(func(c *config) { c.spanName = name })
}

// WithMessagingSystem sets the messaging.system attribute of publish spans:
// "kafka" or "nats", say (the semantic conventions list the known values).
// With "kafka" the message key is recorded as messaging.kafka.message.key;
// otherwise as txoutbox.message.key, since the conventions have no
// system-neutral key attribute. Unset by default, because a publisher
// wrapper cannot know what it wraps.
func WithMessagingSystem(system string) Option {
	return optionFunc(func(c *config) { c.system = system })
}

// WithAttributes adds attributes to every publish span, for example
// server.address or the name of the outbox.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return optionFunc(func(c *config) { c.attributes = append(c.attributes, attrs...) })
}
