package outboxotel_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/txoutbox/txoutbox/conformance"
	outboxotel "github.com/txoutbox/txoutbox/contrib/otel"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// End to end: a message enqueued in a traced request reaches the broker
// through a relay, and the trace links the request, each publish attempt
// and the broker message.
func TestRelayContinuesTheWritersTrace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tp, rec := newRecorder(t)
	store := memory.NewStore(memory.StoreConfig{})
	broker := memory.NewPublisher(memory.PublisherConfig{})

	// The broker refuses the first attempt, so the relay retries.
	var attempts atomic.Int32
	errFirst := errors.New("leader not available")
	broker.SetReject(func(outbox.Message) error {
		if attempts.Add(1) == 1 {
			return errFirst
		}
		return nil
	})

	wctx, writer := tp.Tracer("test").Start(ctx, "PUT /users/42")
	msg := outbox.Message{Topic: "user.updated", Key: "user-42", Payload: []byte(`{"name":"Ada"}`)}
	outboxotel.Inject(wctx, &msg)
	tx := store.Begin()
	if err := store.Enqueue(wctx, tx, msg); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	writer.End()

	cfg := conformance.TestRelayConfig(t)
	cfg.MaxAttempts = 5
	stop := conformance.StartRelay(t, store, outboxotel.WrapPublisher(broker, outboxotel.WithTracerProvider(tp)), cfg)
	if err := broker.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	stop()

	spans := spansNamed(rec, "send user.updated")
	if len(spans) != 2 {
		t.Fatalf("%d publish spans, want 2 (a failed attempt and a delivery)", len(spans))
	}
	for _, s := range spans {
		if s.Parent().SpanID() != writer.SpanContext().SpanID() || s.SpanContext().TraceID() != writer.SpanContext().TraceID() {
			t.Errorf("publish span %v has parent %v; want the writer's span %v", s.SpanContext().SpanID(), s.Parent().SpanID(), writer.SpanContext().SpanID())
		}
	}
	failed, delivered := spans[0], spans[1]
	if failed.Status().Code != codes.Error || failed.Status().Description != errFirst.Error() {
		t.Errorf("first attempt: status %v, want the broker's error", failed.Status())
	}
	if delivered.Status().Code != codes.Unset {
		t.Errorf("delivery: status %v", delivered.Status())
	}
	got := broker.Messages()[0].Headers["traceparent"]
	if got != traceparent(delivered.SpanContext()) {
		t.Errorf("broker message traceparent %q, want the delivering span's %q", got, traceparent(delivered.SpanContext()))
	}
}
