package outboxotel_test

import (
	"context"
	"maps"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	outboxotel "github.com/txoutbox/txoutbox/contrib/otel"
	outbox "github.com/txoutbox/txoutbox/core"
)

func TestInjectWritesTheWritersTraceContext(t *testing.T) {
	t.Parallel()
	tp, _ := newRecorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "handle request")
	defer span.End()

	msg := outbox.Message{Topic: "user.updated", Key: "user-42", Headers: map[string]string{"content-type": "application/json"}}
	outboxotel.Inject(ctx, &msg)

	if got, want := msg.Headers["traceparent"], traceparent(span.SpanContext()); got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
	if msg.Headers["content-type"] != "application/json" {
		t.Errorf("Inject lost an existing header: %v", msg.Headers)
	}
	prepared(t, msg) // the headers pass core's validation
}

func TestInjectWritesTraceState(t *testing.T) {
	t.Parallel()
	ts, err := trace.ParseTraceState("vendor=abc,other=x:y")
	if err != nil {
		t.Fatal(err)
	}
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
	}))
	var msg outbox.Message
	outboxotel.Inject(ctx, &msg)
	if msg.Headers["tracestate"] != "vendor=abc,other=x:y" {
		t.Errorf("tracestate = %q", msg.Headers["tracestate"])
	}
	prepared(t, outbox.Message{Topic: "t", Headers: msg.Headers})
}

func TestInjectWithoutSpanLeavesHeadersAlone(t *testing.T) {
	t.Parallel()
	var msg outbox.Message
	outboxotel.Inject(context.Background(), &msg)
	if msg.Headers != nil {
		t.Errorf("Headers = %v, want nil (no trace context to write)", msg.Headers)
	}
	outboxotel.Inject(context.Background(), nil) // a nil message is ignored
}

func TestInjectReplacesTraceparentOfAnyCase(t *testing.T) {
	t.Parallel()
	tp, _ := newRecorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "write")
	defer span.End()
	msg := outbox.Message{Headers: map[string]string{"Traceparent": "00-00000000000000000000000000000001-0000000000000001-01"}}
	outboxotel.Inject(ctx, &msg)
	want := map[string]string{"traceparent": traceparent(span.SpanContext())}
	if !maps.Equal(msg.Headers, want) {
		t.Errorf("Headers = %v, want %v", msg.Headers, want)
	}
}

func TestInjectAll(t *testing.T) {
	t.Parallel()
	tp, _ := newRecorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "write")
	defer span.End()
	msgs := []outbox.Message{{Topic: "a"}, {Topic: "b", Headers: map[string]string{"x": "1"}}}
	outboxotel.InjectAll(ctx, msgs)
	for i, m := range msgs {
		if m.Headers["traceparent"] != traceparent(span.SpanContext()) {
			t.Errorf("message %d: headers %v", i, m.Headers)
		}
	}
	if msgs[1].Headers["x"] != "1" {
		t.Errorf("InjectAll lost a header: %v", msgs[1].Headers)
	}
	prepared(t, msgs...)
}

func TestExtractContinuesTheTrace(t *testing.T) {
	t.Parallel()
	tp, _ := newRecorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "write")
	defer span.End()
	var msg outbox.Message
	outboxotel.Inject(ctx, &msg)

	// Some clients change the case of header names on the way.
	headers := map[string]string{"Traceparent": msg.Headers["traceparent"]}
	got := trace.SpanContextFromContext(outboxotel.Extract(context.Background(), headers))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want the remote span %v", got, span.SpanContext())
	}
	if sc := trace.SpanContextFromContext(outboxotel.Extract(context.Background(), nil)); sc.IsValid() {
		t.Errorf("extracted %v from no headers", sc)
	}
}

func TestBaggageOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	tp, _ := newRecorder(t)
	member, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tp.Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), bag), "write")
	defer span.End()

	var plain outbox.Message
	outboxotel.Inject(ctx, &plain)
	if _, ok := plain.Headers["baggage"]; ok {
		t.Errorf("the default propagator wrote baggage: %v", plain.Headers)
	}

	withBaggage := outboxotel.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	var msg outbox.Message
	outboxotel.Inject(ctx, &msg, withBaggage)
	if msg.Headers["baggage"] != "tenant=acme" || msg.Headers["traceparent"] == "" {
		t.Errorf("headers = %v, want traceparent and baggage", msg.Headers)
	}
	prepared(t, outbox.Message{Topic: "t", Headers: msg.Headers})
	got := baggage.FromContext(outboxotel.Extract(context.Background(), msg.Headers, withBaggage))
	if got.Member("tenant").Value() != "acme" {
		t.Errorf("extracted baggage %v", got)
	}
}
