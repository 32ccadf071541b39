package outboxotel_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	outbox "github.com/txoutbox/txoutbox/core"
)

// newRecorder returns a tracer provider whose spans are recorded in memory.
func newRecorder(t testing.TB) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

// testContext is a context bounded by the test's deadline (or a minute).
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// prepared returns msgs with IDs and CreatedAt set, failing t when they are
// invalid: every message this package touches must still pass validation.
func prepared(t testing.TB, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return msgs
}

// spansNamed returns the ended spans with the given name.
func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// spanFor returns the ended span whose messaging.message.id is id.
func spanFor(t testing.TB, rec *tracetest.SpanRecorder, id string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "messaging.message.id" && a.Value.AsString() == id {
				found = append(found, s)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ended spans for message %s, want 1", len(found), id)
	}
	return found[0]
}

// attr returns the value of attribute key on s, and whether s has it.
func attr(s sdktrace.ReadOnlySpan, key string) (string, bool) {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

// traceparent formats sc as a W3C traceparent header value.
func traceparent(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// stubPublisher returns fixed results, and remembers what it was given.
type stubPublisher struct {
	results []error
	got     []outbox.Message
}

func (p *stubPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	p.got = msgs
	return p.results
}
