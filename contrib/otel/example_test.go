package outboxotel_test

import (
	"context"
	"fmt"
	"log/slog"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	outboxotel "github.com/txoutbox/txoutbox/contrib/otel"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// Inject stores the writer's trace context in the message headers, in the
// same transaction as the message.
func ExampleInject() {
	// The span of the request that writes the message; a real service gets
	// it from its HTTP or RPC instrumentation.
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))

	msg := outbox.Message{Topic: "user.updated", Key: "user-42", Payload: []byte(`{"name":"Ada"}`)}
	outboxotel.Inject(ctx, &msg)
	// store.Enqueue(ctx, tx, msg) would follow, inside the transaction.
	fmt.Println(msg.Headers["traceparent"])
	// Output: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
}

// WrapPublisher gives each publish its own span, a child of the span that
// wrote the message, and hands that span's context to the broker.
func ExampleWrapPublisher() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(ctx) }()

	store := memory.NewStore(memory.StoreConfig{})
	broker := memory.NewPublisher(memory.PublisherConfig{})

	// The service writes a message while handling a request.
	reqCtx, request := tp.Tracer("service").Start(ctx, "PUT /users/42")
	msg := outbox.Message{Topic: "user.updated", Key: "user-42", Payload: []byte(`{"name":"Ada"}`)}
	outboxotel.Inject(reqCtx, &msg)
	tx := store.Begin()
	if err := store.Enqueue(reqCtx, tx, msg); err != nil {
		panic(err)
	}
	_ = tx.Commit()
	request.End()

	// The relay publishes through the wrapper.
	pub := outboxotel.WrapPublisher(broker,
		outboxotel.WithTracerProvider(tp), // usually the global provider, the default
		outboxotel.WithMessagingSystem("kafka"))
	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(runCtx) }()
	_ = broker.WaitFor(ctx, 1)
	stop()
	<-done

	for _, s := range spans.Ended() {
		if s.SpanKind() != trace.SpanKindProducer {
			continue
		}
		fmt.Println(s.Name(), s.SpanKind())
		fmt.Println("child of the request:", s.Parent().SpanID() == request.SpanContext().SpanID())
		sent := outboxotel.Extract(ctx, broker.Messages()[0].Headers)
		fmt.Println("consumers continue from it:", trace.SpanContextFromContext(sent).SpanID() == s.SpanContext().SpanID())
	}
	// Output:
	// send user.updated producer
	// child of the request: true
	// consumers continue from it: true
}
