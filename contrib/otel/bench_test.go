package outboxotel_test

import (
	"context"
	"fmt"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	outboxotel "github.com/txoutbox/txoutbox/contrib/otel"
	outbox "github.com/txoutbox/txoutbox/core"
)

// discard accepts every message and does nothing, so that the benchmarks
// measure the wrapper alone.
type discard struct{}

func (discard) Publish(_ context.Context, msgs []outbox.Message) []error {
	return make([]error, len(msgs))
}

// BenchmarkWrapPublisher measures the tracing cost per message of a batch
// of 500 (the relay's default batch size) written in a sampled request.
func BenchmarkWrapPublisher(b *testing.B) {
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"recording", sdktrace.NewTracerProvider()}, // sampled spans, no exporter
		{"noop", noop.NewTracerProvider()},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			wctx, span := sdktrace.NewTracerProvider().Tracer("bench").Start(ctx, "write")
			defer span.End()
			msgs := make([]outbox.Message, 500)
			for i := range msgs {
				msgs[i] = outbox.Message{Topic: "orders", Key: fmt.Sprint(i % 50), Payload: make([]byte, 200),
					Headers: map[string]string{"content-type": "application/json"}}
			}
			outboxotel.InjectAll(wctx, msgs)
			if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
				b.Fatal(err)
			}
			pub := outboxotel.WrapPublisher(discard{}, outboxotel.WithTracerProvider(c.tp), outboxotel.WithMessagingSystem("kafka"))
			b.ReportAllocs()
			for b.Loop() {
				pub.Publish(ctx, msgs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/msg")
		})
	}
}

// BenchmarkInject measures the enqueue-side cost: one header map write.
func BenchmarkInject(b *testing.B) {
	ctx, span := sdktrace.NewTracerProvider().Tracer("bench").Start(context.Background(), "write")
	defer span.End()
	b.ReportAllocs()
	for b.Loop() {
		msg := outbox.Message{Topic: "orders"}
		outboxotel.Inject(ctx, &msg)
	}
}
