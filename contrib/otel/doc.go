// Package outboxotel carries OpenTelemetry trace context through a
// transactional outbox, from the transaction that writes a message to the
// broker that receives it.
//
// Core stays free of third-party imports; this package is the bridge. It
// does two things:
//
//   - At enqueue, [Inject] (or [InjectAll]) writes the W3C trace context of
//     the writing request (the traceparent and tracestate headers) into the
//     message headers, so it is stored with the message in the same
//     transaction.
//   - In the relay, [WrapPublisher] decorates any [outbox.Publisher]: for
//     each message it starts a producer span whose parent is the writer's
//     span, replaces the trace context in the headers sent to the broker
//     with that span's, and records the publish result on it. Consumers
//     that extract the trace context from the broker message (for example
//     with [Extract]) continue the same trace.
//
// A trace then reads: the request that wrote the message, its "send" span
// in the relay (one per attempt, with the broker's error when it failed),
// and the consumer's processing.
//
//	// In the service, inside its transaction:
//	msg := outbox.Message{Topic: "user.updated", Key: userID, Payload: body}
//	outboxotel.Inject(ctx, &msg)
//	err = store.Enqueue(ctx, tx, msg)
//
//	// In the relay:
//	pub := outboxotel.WrapPublisher(kafkapub.New(client), outboxotel.WithMessagingSystem("kafka"))
//	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{})
//
// The propagator is W3C Trace Context ([propagation.TraceContext]) unless
// [WithPropagator] says otherwise; it does not depend on the global
// propagator being set. Baggage is not propagated by default: it is
// application data that would be stored in the outbox table and copied to
// every broker message; pass a composite propagator to opt in.
//
// Spans are created with the global tracer provider unless
// [WithTracerProvider] names another, so the usual sampling applies: with
// a parent-based sampler a message written in an unsampled request gets an
// unsampled (non-recording) publish span.
package outboxotel
