package outboxotel

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Inject writes the trace context of ctx into msg.Headers (traceparent and,
// when there is one, tracestate), creating the map if needed. Call it just
// before the store's Enqueue, in the request that writes the message:
//
//	outboxotel.Inject(ctx, &msg)
//	err := store.Enqueue(ctx, tx, msg)
//
// When ctx carries no valid span context, nothing is written and a nil
// Headers map stays nil. Header names written by the W3C propagators
// (traceparent, tracestate, baggage) pass [outbox.Message] validation. An
// existing header with the same name in another letter case is replaced.
func Inject(ctx context.Context, msg *outbox.Message, opts ...PropagationOption) {
	if msg == nil {
		return
	}
	c := newConfig(opts)
	c.propagator.Inject(ctx, &headerCarrier{headers: &msg.Headers})
}

// InjectAll is [Inject] for each element of msgs, in place, as a store's
// Enqueue takes many messages of one transaction.
func InjectAll(ctx context.Context, msgs []outbox.Message, opts ...PropagationOption) {
	c := newConfig(opts)
	for i := range msgs {
		c.propagator.Inject(ctx, &headerCarrier{headers: &msgs[i].Headers})
	}
}

// Extract returns ctx with the trace context read from headers, for a
// consumer that received an outbox message and wants to continue its
// trace. Header names are matched regardless of letter case. Pass the same
// [WithPropagator] as the publishing side.
func Extract(ctx context.Context, headers map[string]string, opts ...PropagationOption) context.Context {
	c := newConfig(opts)
	return c.propagator.Extract(ctx, &headerCarrier{headers: &headers})
}

// headerCarrier lets a propagator read and write a message's headers. It
// creates the map on the first Set, so that messages without a trace
// context keep a nil map, and it matches names regardless of case, because
// some brokers and clients change the case of header names.
type headerCarrier struct {
	headers *map[string]string
}

var _ propagation.TextMapCarrier = (*headerCarrier)(nil)

func (c *headerCarrier) Get(key string) string {
	h := *c.headers
	if v, ok := h[key]; ok {
		return v
	}
	for name, v := range h {
		if strings.EqualFold(name, key) {
			return v
		}
	}
	return ""
}

func (c *headerCarrier) Set(key, value string) {
	h := *c.headers
	if h == nil {
		h = make(map[string]string, 2)
		*c.headers = h
	}
	for name := range h {
		if name != key && strings.EqualFold(name, key) {
			delete(h, name)
		}
	}
	h[key] = value
}

func (c *headerCarrier) Keys() []string {
	keys := make([]string, 0, len(*c.headers))
	for name := range *c.headers {
		keys = append(keys, name)
	}
	return keys
}
