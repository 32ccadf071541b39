package outboxotel_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	outboxotel "github.com/txoutbox/txoutbox/contrib/otel"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

func TestPublishSpanContinuesTheWritersTrace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tp, rec := newRecorder(t)

	wctx, writer := tp.Tracer("test").Start(ctx, "handle request")
	msg := outbox.Message{Topic: "user.updated", Key: "user-42", Payload: []byte("{}"), Headers: map[string]string{"content-type": "application/json"}}
	outboxotel.Inject(wctx, &msg)
	writer.End()
	msgs := prepared(t, msg)
	stored := maps.Clone(msgs[0].Headers)

	broker := memory.NewPublisher(memory.PublisherConfig{})
	pub := outboxotel.WrapPublisher(broker, outboxotel.WithTracerProvider(tp))
	if errs := pub.Publish(ctx, msgs); len(errs) != 1 || errs[0] != nil {
		t.Fatalf("Publish = %v", errs)
	}

	span := spanFor(t, rec, msgs[0].ID)
	if span.Name() != "send user.updated" || span.SpanKind() != trace.SpanKindProducer {
		t.Errorf("span %q of kind %v, want \"send user.updated\" of kind producer", span.Name(), span.SpanKind())
	}
	if span.Parent().SpanID() != writer.SpanContext().SpanID() || span.SpanContext().TraceID() != writer.SpanContext().TraceID() {
		t.Errorf("publish span has parent %v in trace %v; want the writer's span %v", span.Parent().SpanID(), span.SpanContext().TraceID(), writer.SpanContext())
	}
	if !span.Parent().IsRemote() {
		t.Errorf("the parent should be remote: it came from the message headers")
	}
	if span.Status().Code != codes.Unset {
		t.Errorf("status %v for a delivered message", span.Status())
	}
	for key, want := range map[string]string{
		"messaging.operation.name":    "send",
		"messaging.operation.type":    "send",
		"messaging.destination.name":  "user.updated",
		"messaging.message.id":        msgs[0].ID,
		"messaging.message.body.size": "2",
		"txoutbox.message.key":        "user-42",
	} {
		if got, _ := attr(span, key); got != want {
			t.Errorf("attribute %s = %q, want %q", key, got, want)
		}
	}
	if _, ok := attr(span, "messaging.system"); ok {
		t.Errorf("messaging.system is set without WithMessagingSystem")
	}

	got := broker.Messages()[0].Headers
	if got["traceparent"] != traceparent(span.SpanContext()) {
		t.Errorf("the broker got traceparent %q, want the publish span's %q", got["traceparent"], traceparent(span.SpanContext()))
	}
	if got["content-type"] != "application/json" {
		t.Errorf("the broker lost a header: %v", got)
	}
	if !maps.Equal(msgs[0].Headers, stored) {
		t.Errorf("the caller's headers changed to %v, want %v", msgs[0].Headers, stored)
	}
}

func TestPublishResultsAreRecordedAndPassedThrough(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tp, rec := newRecorder(t)
	wctx, writer := tp.Tracer("test").Start(ctx, "write")
	msgs := make([]outbox.Message, 7)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "orders", Key: "k"}
	}
	outboxotel.InjectAll(wctx, msgs)
	writer.End()
	msgs = prepared(t, msgs...)

	errBroker := errors.New("broker said no")
	inner := &stubPublisher{results: []error{
		nil,
		errBroker,
		outbox.ErrNotAttempted,
		outbox.Permanent(errors.New("too large")),
		errors.Join(outbox.ErrUnavailable, errors.New("dial tcp: refused")),
		fmt.Errorf("kafkapub: topic %q: NOT_ENOUGH_REPLICAS: %w", "orders", outbox.ErrTopicUnavailable),
		errors.Join(outbox.ErrUnavailable, outbox.ErrTopicUnavailable), // the relay pauses for both: an outage
	}}
	results := outboxotel.WrapPublisher(inner, outboxotel.WithTracerProvider(tp)).Publish(ctx, msgs)
	if len(results) != len(inner.results) || &results[0] != &inner.results[0] {
		t.Fatalf("Publish returned %v, want the inner publisher's results unchanged", results)
	}
	for i, err := range results {
		if err != inner.results[i] {
			t.Errorf("result %d = %v, want %v", i, err, inner.results[i])
		}
	}
	if !slices.EqualFunc(inner.got, msgs, func(a, b outbox.Message) bool { return a.ID == b.ID }) {
		t.Errorf("the inner publisher got other messages or another order")
	}

	wantType := []string{"", "*errors.errorString", "not_attempted", "permanent", "unavailable", "topic_unavailable", "unavailable"}
	for i, m := range msgs {
		span := spanFor(t, rec, m.ID)
		if span.Parent().SpanID() != writer.SpanContext().SpanID() {
			t.Errorf("message %d: parent %v, want the writer", i, span.Parent().SpanID())
		}
		errType, _ := attr(span, "error.type")
		if errType != wantType[i] {
			t.Errorf("message %d: error.type %q, want %q", i, errType, wantType[i])
		}
		if results[i] == nil {
			if span.Status().Code != codes.Unset || len(span.Events()) != 0 {
				t.Errorf("message %d: status %v and events %v for a delivered message", i, span.Status(), span.Events())
			}
			continue
		}
		if span.Status().Code != codes.Error || span.Status().Description != results[i].Error() {
			t.Errorf("message %d: status %v, want error %q", i, span.Status(), results[i])
		}
		if ev := span.Events(); len(ev) != 1 || ev[0].Name != "exception" {
			t.Errorf("message %d: events %v, want one exception", i, ev)
		}
	}
}

func TestPublisherThatBreaksTheContractStillEndsSpans(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tp, rec := newRecorder(t)
	msgs := prepared(t, outbox.Message{Topic: "a"}, outbox.Message{Topic: "a"}, outbox.Message{Topic: "a"})
	inner := &stubPublisher{results: []error{nil}}
	results := outboxotel.WrapPublisher(inner, outboxotel.WithTracerProvider(tp)).Publish(ctx, msgs)
	if len(results) != 1 {
		t.Fatalf("Publish returned %d results; the relay must see the inner publisher's answer as it is", len(results))
	}
	if len(rec.Ended()) != 3 {
		t.Fatalf("%d spans ended, want 3", len(rec.Ended()))
	}
	for _, m := range msgs[1:] {
		if s := spanFor(t, rec, m.ID); s.Status().Code != codes.Error {
			t.Errorf("span of a message without a result has status %v", s.Status())
		}
	}
}

func TestPublishWithoutWriterContextStartsATrace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tp, rec := newRecorder(t)
	msgs := prepared(t, outbox.Message{Topic: "a"})
	broker := memory.NewPublisher(memory.PublisherConfig{})
	outboxotel.WrapPublisher(broker, outboxotel.WithTracerProvider(tp)).Publish(ctx, msgs)

	span := spanFor(t, rec, msgs[0].ID)
	if span.Parent().IsValid() {
		t.Errorf("parent %v, want none", span.Parent())
	}
	if got := broker.Messages()[0].Headers["traceparent"]; got != traceparent(span.SpanContext()) {
		t.Errorf("the broker got traceparent %q, want %q", got, traceparent(span.SpanContext()))
	}
	if msgs[0].Headers != nil {
		t.Errorf("the caller's nil headers became %v", msgs[0].Headers)
	}
}

func TestDisabledTracingStillCarriesTheWritersContext(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tp, _ := newRecorder(t)
	wctx, writer := tp.Tracer("test").Start(ctx, "write")
	var msg outbox.Message
	msg.Topic = "a"
	outboxotel.Inject(wctx, &msg)
	writer.End()
	msgs := prepared(t, msg)

	broker := memory.NewPublisher(memory.PublisherConfig{})
	pub := outboxotel.WrapPublisher(broker, outboxotel.WithTracerProvider(noop.NewTracerProvider()))
	pub.Publish(ctx, msgs)
	if got := broker.Messages()[0].Headers["traceparent"]; got != traceparent(writer.SpanContext()) {
		t.Errorf("traceparent at the broker = %q; with a no-op tracer the writer's %q should pass through", got, traceparent(writer.SpanContext()))
	}
}

func TestPublisherOptions(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tp, rec := newRecorder(t)
	msgs := prepared(t, outbox.Message{Topic: "orders.eu.1234", Key: "order-1"})
	pub := outboxotel.WrapPublisher(memory.NewPublisher(memory.PublisherConfig{}),
		outboxotel.WithTracerProvider(tp),
		outboxotel.WithMessagingSystem("kafka"),
		outboxotel.WithSpanName(func(outbox.Message) string { return "send orders.*" }),
		outboxotel.WithAttributes(attribute.String("server.address", "kafka-1")),
		outboxotel.WithPropagator(nil), // keeps the default
	)
	pub.Publish(ctx, msgs)
	span := spanFor(t, rec, msgs[0].ID)
	if span.Name() != "send orders.*" {
		t.Errorf("span name %q", span.Name())
	}
	for key, want := range map[string]string{
		"messaging.system":            "kafka",
		"messaging.kafka.message.key": "order-1",
		"server.address":              "kafka-1",
	} {
		if got, _ := attr(span, key); got != want {
			t.Errorf("attribute %s = %q, want %q", key, got, want)
		}
	}
	if _, ok := attr(span, "txoutbox.message.key"); ok {
		t.Errorf("txoutbox.message.key is set beside messaging.kafka.message.key")
	}
	if span.InstrumentationScope().Name != outboxotel.ScopeName {
		t.Errorf("scope %q, want %q", span.InstrumentationScope().Name, outboxotel.ScopeName)
	}
}

func TestWrapperKeepsPingerAndUnwraps(t *testing.T) {
	t.Parallel()
	broker := memory.NewPublisher(memory.PublisherConfig{})
	pub := outboxotel.WrapPublisher(broker)
	pinger, ok := pub.(outbox.Pinger)
	if !ok {
		t.Fatal("the wrapper of a Pinger is not a Pinger; health checks would lose it")
	}
	if err := pinger.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pinger.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with a cancelled context = %v; the inner Ping was not called", err)
	}
	if u, ok := pub.(interface{ Unwrap() outbox.Publisher }); !ok || u.Unwrap() != broker {
		t.Errorf("Unwrap does not return the wrapped publisher")
	}

	if _, ok := outboxotel.WrapPublisher(&stubPublisher{}).(outbox.Pinger); ok {
		t.Error("the wrapper of a publisher without Ping claims to be a Pinger")
	}
}
