package outboxotel

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ScopeName is the instrumentation scope of the spans this package creates.
const ScopeName = "github.com/txoutbox/txoutbox/contrib/otel"

// KeyAttribute records the message key on publish spans when the messaging
// system is not Kafka (see [WithMessagingSystem]).
const KeyAttribute = attribute.Key("txoutbox.message.key")

// WrapPublisher returns a publisher that traces every message it publishes
// through p. For each message it:
//
//  1. reads the writer's trace context from the message headers (written
//     by [Inject] at enqueue); without one, the span of ctx, if any, is the
//     parent;
//  2. starts a span of kind producer named "send <topic>" with the
//     messaging semantic-convention attributes (messaging.system when
//     given, messaging.operation.name and .type "send",
//     messaging.destination.name, messaging.message.id,
//     messaging.message.body.size and the key);
//  3. writes that span's context into a copy of the headers, so the
//     message reaches the broker with the publish span as the consumer's
//     parent;
//
// then calls p.Publish once for the whole batch and ends each span with
// the message's result: an error is recorded as an exception event, the
// error status and an error.type attribute ("not_attempted", "permanent",
// "unavailable", "topic_unavailable", "timeout", "canceled" or the Go type
// of the error).
//
// The wrapper keeps the [outbox.Publisher] contract: it returns p's
// results unchanged (same slice, one per message, [outbox.ErrNotAttempted]
// passed through), in the same order, and never modifies the caller's
// messages or their header maps; the stored message keeps the writer's
// context, so every retry starts a new span under the same parent. A span
// lasts as long as the batch's Publish call.
//
// When p is also an [outbox.Pinger], so is the returned publisher; its
// Unwrap method returns p.
func WrapPublisher(p outbox.Publisher, opts ...Option) outbox.Publisher {
	c := newConfig(opts)
	w := &publisher{
		inner:  p,
		tracer: c.tracerProvider.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		cfg:    c,
	}
	if pinger, ok := p.(outbox.Pinger); ok {
		return &pingingPublisher{publisher: w, pinger: pinger}
	}
	return w
}

type publisher struct {
	inner  outbox.Publisher
	tracer trace.Tracer
	cfg    config
}

// pingingPublisher forwards Ping, so that health checks that look for
// [outbox.Pinger] still find it behind the wrapper.
type pingingPublisher struct {
	*publisher
	pinger outbox.Pinger
}

var (
	_ outbox.Publisher = (*publisher)(nil)
	_ outbox.Pinger    = (*pingingPublisher)(nil)
)

// Ping implements [outbox.Pinger] by calling the wrapped publisher's Ping.
func (p *pingingPublisher) Ping(ctx context.Context) error { return p.pinger.Ping(ctx) }

// Unwrap returns the wrapped publisher.
func (p *publisher) Unwrap() outbox.Publisher { return p.inner }

// Publish implements [outbox.Publisher].
func (p *publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	out := make([]outbox.Message, len(msgs))
	spans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		parent := p.cfg.propagator.Extract(ctx, &headerCarrier{headers: &m.Headers})
		sctx, span := p.tracer.Start(parent, p.cfg.spanName(m),
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(p.attributes(m)...))
		spans[i] = span
		m.Headers = maps.Clone(m.Headers)
		p.cfg.propagator.Inject(sctx, &headerCarrier{headers: &m.Headers})
		out[i] = m
	}

	results := p.inner.Publish(ctx, out)

	for i, span := range spans {
		var err error
		if i < len(results) {
			err = results[i]
		} else {
			err = fmt.Errorf("outboxotel: the wrapped publisher returned %d results for %d messages", len(results), len(msgs))
		}
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		}
		span.End()
	}
	return results
}

func (p *publisher) attributes(m outbox.Message) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 7+len(p.cfg.attributes))
	if p.cfg.system != "" {
		attrs = append(attrs, semconv.MessagingSystemKey.String(p.cfg.system))
	}
	attrs = append(attrs,
		semconv.MessagingOperationName("send"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(m.Topic),
		semconv.MessagingMessageID(m.ID),
		semconv.MessagingMessageBodySize(len(m.Payload)),
	)
	if m.Key != "" {
		if p.cfg.system == "kafka" {
			attrs = append(attrs, semconv.MessagingKafkaMessageKey(m.Key))
		} else {
			attrs = append(attrs, KeyAttribute.String(m.Key))
		}
	}
	return append(attrs, p.cfg.attributes...)
}

// errorType names a publish error for the error.type attribute, which
// must stay low-cardinality: the outbox's own classes first, then the
// semantic conventions' default (the error's Go type).
func errorType(err error) string {
	switch {
	case errors.Is(err, outbox.ErrNotAttempted):
		return "not_attempted"
	case errors.Is(err, outbox.ErrPermanent):
		return "permanent"
	case errors.Is(err, outbox.ErrUnavailable):
		return "unavailable" // before topic_unavailable: the relay treats an error that says both as an outage
	case errors.Is(err, outbox.ErrTopicUnavailable):
		return "topic_unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return semconv.ErrorType(err).Value.AsString()
}
