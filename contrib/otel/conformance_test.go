package outboxotel_test

import (
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/txoutbox/txoutbox/conformance"
	outboxotel "github.com/txoutbox/txoutbox/contrib/otel"
)

// tracedBroker is the in-memory broker behind WrapPublisher, with spans
// from the tracer provider that provider returns.
func tracedBroker(provider func(t *testing.T) trace.TracerProvider) conformance.PublisherHarness {
	inner := conformance.MemoryBroker()
	return conformance.PublisherHarness{New: func(t *testing.T) conformance.Broker {
		b := inner.New(t)
		b.Publisher = outboxotel.WrapPublisher(b.Publisher, outboxotel.WithTracerProvider(provider(t)))
		return b
	}}
}

func recording(t *testing.T) trace.TracerProvider {
	tp, _ := newRecorder(t)
	return tp
}

func notRecording(*testing.T) trace.TracerProvider { return noop.NewTracerProvider() }

// The wrapper keeps every promise of a publisher: results per message,
// per-key order when a message fails, refusals reported.
//
// The suite checks that headers arrive exactly as written, traceparent
// included, while a recording wrapper replaces the traceparent with its
// publish span's (on purpose; TestPublishSpanContinuesTheWritersTrace
// checks that). With a tracer that records nothing the writer's context
// passes through unchanged, so the suite runs with that one.
func TestConformancePublisher(t *testing.T) {
	conformance.RunPublisherSuite(t, tracedBroker(notRecording))
}

// A relay publishing through a recording wrapper loses nothing and keeps
// per-key order.
func TestConformanceRelay(t *testing.T) {
	conformance.RunRelaySuite(t, conformance.RelayHarness{Store: conformance.MemoryOutbox(), Broker: tracedBroker(recording)})
}
