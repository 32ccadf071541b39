package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

type publisherTest struct {
	name string
	run  func(t *testing.T, b Broker)
}

// RunPublisherSuite proves that a publisher keeps the promises of
// [outbox.Publisher]: messages arrive with their key, headers, payload and
// ID; every result tells the truth; a failed message holds back the later
// messages of its key; refusals are errors, not silence. Every test gets
// its own broker namespace from h.New and runs in parallel.
func RunPublisherSuite(t *testing.T, h PublisherHarness) {
	if h.New == nil {
		t.Fatal("conformance: PublisherHarness.New is nil")
	}
	for _, tc := range publisherTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, h.New(t))
		})
	}
}

var publisherTests = []publisherTest{
	{"DeliversKeyHeadersPayloadAndID", func(t *testing.T, b Broker) {
		ctx := testContext(t)
		topic := b.Topic(t)
		msgs := []outbox.Message{
			{Topic: topic, Key: "k1", Payload: []byte(`{"n":1}`), Headers: map[string]string{"content-type": "application/json", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
			{Topic: topic, Key: "k1", Payload: []byte{0, 1, 2, 255}},
			{Topic: topic, Key: "k2", Payload: []byte("two")},
			{Topic: topic, Payload: []byte("no key")},
			{Topic: topic, Key: "k3"},
		}
		prepare(t, msgs)
		c := consume(t, ctx, b, topic)
		requireAllNil(t, b.Publisher.Publish(ctx, msgs))
		got := c.waitIDs(t, ctx, messageIDs(msgs)...)
		for _, m := range msgs {
			r := got[m.ID]
			if r.Topic != m.Topic || r.Key != m.Key || !bytes.Equal(r.Payload, m.Payload) {
				t.Errorf("message %s arrived as topic %q key %q payload %q; want %q %q %q", m.ID, r.Topic, r.Key, r.Payload, m.Topic, m.Key, m.Payload)
			}
			for name, value := range m.Headers {
				if r.Headers[name] != value {
					t.Errorf("message %s arrived with header %s=%q, want %q", m.ID, name, r.Headers[name], value)
				}
			}
		}
	}},
	{"KeepsPerKeyOrderAcrossBatches", func(t *testing.T, b Broker) {
		ctx := testContext(t)
		topic := b.Topic(t)
		const keys, perKey, batch = 8, 40, 64
		var msgs []outbox.Message
		for i := range perKey {
			for k := range keys {
				msgs = append(msgs, outbox.Message{Topic: topic, Key: keyName(k), Payload: fmt.Appendf(nil, "%d", i)})
			}
		}
		prepare(t, msgs)
		c := consume(t, ctx, b, topic)
		for start := 0; start < len(msgs); start += batch {
			requireAllNil(t, b.Publisher.Publish(ctx, msgs[start:min(start+batch, len(msgs))]))
		}
		c.waitIDs(t, ctx, messageIDs(msgs)...)
		ledger := NewLedger()
		ledger.Committed(msgs...)
		for _, r := range c.all() {
			ledger.Receive(r)
		}
		if rep := ledger.Report(); !rep.Clean() {
			t.Fatalf("per-key order broken: %s", rep)
		}
	}},
	{"FailureHoldsBackLaterMessagesOfItsKey", func(t *testing.T, b Broker) {
		if b.MissingTopic == nil {
			t.Skip("the broker harness has no MissingTopic to make a publish fail")
		}
		ctx := testContext(t)
		topic, missing := b.Topic(t), b.MissingTopic(t)
		msgs := []outbox.Message{
			{Topic: topic, Key: "a", Payload: []byte("a1")},
			{Topic: missing, Key: "a", Payload: []byte("a2 fails")},
			{Topic: topic, Key: "a", Payload: []byte("a3 must wait")},
			{Topic: topic, Key: "b", Payload: []byte("b1")},
			{Topic: topic, Key: "a", Payload: []byte("a4 must wait")},
		}
		prepare(t, msgs)
		c := consume(t, ctx, b, topic)
		res := b.Publisher.Publish(ctx, msgs)
		if len(res) != len(msgs) {
			t.Fatalf("Publish returned %d results for %d messages", len(res), len(msgs))
		}
		if res[0] != nil || res[3] != nil {
			t.Fatalf("results of a1 and b1 = %v, %v; want nil", res[0], res[3])
		}
		if res[1] == nil {
			t.Fatalf("publishing to the missing topic %q succeeded", missing)
		}
		for _, i := range []int{2, 4} {
			if !errors.Is(res[i], outbox.ErrNotAttempted) {
				t.Fatalf("result of %q = %v; want ErrNotAttempted after a2 failed", msgs[i].Payload, res[i])
			}
		}
		// A later message of key a travels the same path as a3 and a4 would
		// have; once it is here, they would be here too.
		sentinel := []outbox.Message{{Topic: topic, Key: "a", Payload: []byte("a5")}}
		prepare(t, sentinel)
		requireAllNil(t, b.Publisher.Publish(ctx, sentinel))
		got := c.waitIDs(t, ctx, msgs[0].ID, msgs[3].ID, sentinel[0].ID)
		for _, i := range []int{2, 4} {
			if _, ok := got[msgs[i].ID]; ok {
				t.Fatalf("%q reached the broker after an earlier message of its key failed", msgs[i].Payload)
			}
		}
	}},
	{"MissingTopicIsAnError", func(t *testing.T, b Broker) {
		if b.MissingTopic == nil {
			t.Skip("the broker harness has no MissingTopic (the broker creates topics on demand)")
		}
		ctx := testContext(t)
		msgs := []outbox.Message{{Topic: b.MissingTopic(t), Key: "k"}}
		prepare(t, msgs)
		if res := b.Publisher.Publish(ctx, msgs); len(res) != 1 || res[0] == nil {
			t.Fatalf("publishing to a missing topic returned %v; want an error", res)
		}
	}},
	{"OversizedMessageIsAnError", func(t *testing.T, b Broker) {
		if b.MaxMessageBytes <= 0 {
			t.Skip("the broker harness declares no MaxMessageBytes")
		}
		ctx := testContext(t)
		topic := b.Topic(t)
		big := make([]byte, b.MaxMessageBytes+1)
		_, _ = rand.Read(big) // incompressible: brokers check the compressed size
		msgs := []outbox.Message{
			{Topic: topic, Key: "big", Payload: big},
			{Topic: topic, Key: "small", Payload: []byte("fits")},
		}
		prepare(t, msgs)
		c := consume(t, ctx, b, topic)
		res := b.Publisher.Publish(ctx, msgs)
		if len(res) != 2 || res[0] == nil || res[1] != nil {
			t.Fatalf("results = %v; want an error for the oversized message and nil for the other", res)
		}
		c.waitIDs(t, ctx, msgs[1].ID)
	}},
	{"EmptyBatch", func(t *testing.T, b Broker) {
		if res := b.Publisher.Publish(testContext(t), nil); len(res) != 0 {
			t.Fatalf("Publish(nil) returned %d results", len(res))
		}
	}},
	{"CancelledContextNeverFakesSuccess", func(t *testing.T, b Broker) {
		ctx := testContext(t)
		topic := b.Topic(t)
		msgs := newMessages(topic, "k", 3)
		prepare(t, msgs)
		c := consume(t, ctx, b, topic)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		res := b.Publisher.Publish(cancelled, msgs)
		if len(res) != len(msgs) {
			t.Fatalf("Publish returned %d results for %d messages", len(res), len(msgs))
		}
		var ok []string
		for i, err := range res {
			if err == nil {
				ok = append(ok, msgs[i].ID)
			}
		}
		c.waitIDs(t, ctx, ok...) // whatever was reported published must be there
	}},
	{"DuplicatesKeepTheirID", func(t *testing.T, b Broker) {
		ctx := testContext(t)
		topic := b.Topic(t)
		msgs := newMessages(topic, "k", 1)
		prepare(t, msgs)
		c := consume(t, ctx, b, topic)
		requireAllNil(t, b.Publisher.Publish(ctx, msgs))
		requireAllNil(t, b.Publisher.Publish(ctx, msgs)) // a relay retrying after a lost acknowledgement
		sentinel := []outbox.Message{{Topic: topic, Key: "k", Payload: []byte("sentinel")}}
		prepare(t, sentinel)
		requireAllNil(t, b.Publisher.Publish(ctx, sentinel))
		c.waitIDs(t, ctx, msgs[0].ID, sentinel[0].ID)
		copies := 0
		for _, r := range c.all() {
			if bytes.Equal(r.Payload, msgs[0].Payload) {
				copies++
				if r.ID != msgs[0].ID {
					t.Fatalf("a copy of %s arrived with ID %q", msgs[0].ID, r.ID)
				}
			}
		}
		if copies < 1 || copies > 2 {
			t.Fatalf("%d copies arrived, want 1 (broker deduplication) or 2", copies)
		}
	}},
}

func prepare(t *testing.T, msgs []outbox.Message) {
	t.Helper()
	if err := outbox.Prepare(msgs, outbox.Limits{MaxPayloadBytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
}

func requireAllNil(t *testing.T, res []error) {
	t.Helper()
	for i, err := range res {
		if err != nil {
			t.Fatalf("result %d of %d: %v", i, len(res), err)
		}
	}
}

// collector gathers what a consumer reads, for tests to wait on.
type collector struct {
	mu      sync.Mutex
	got     []Received
	changed chan struct{}
	err     error
}

// consume starts reading topics in the background until t ends.
func consume(t *testing.T, ctx context.Context, b Broker, topics ...string) *collector {
	t.Helper()
	c := &collector{changed: make(chan struct{})}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := b.Consume(cctx, topics, func(r Received) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.got = append(c.got, r)
			close(c.changed)
			c.changed = make(chan struct{})
		})
		if err != nil && cctx.Err() == nil {
			c.mu.Lock()
			c.err = err
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// waitIDs waits until every id arrived and returns the first arrival of each
// ID seen so far.
func (c *collector) waitIDs(t *testing.T, ctx context.Context, ids ...string) map[string]Received {
	t.Helper()
	for {
		c.mu.Lock()
		byID := make(map[string]Received, len(c.got))
		for _, r := range c.got {
			if _, seen := byID[r.ID]; !seen {
				byID[r.ID] = r
			}
		}
		changed, err := c.changed, c.err
		c.mu.Unlock()
		missing := 0
		for _, id := range ids {
			if _, ok := byID[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return byID
		}
		if err != nil {
			t.Fatalf("consumer failed with %d of %d messages missing: %v", missing, len(ids), err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("%d of %d messages never arrived", missing, len(ids))
		}
	}
}

func (c *collector) all() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.got...)
}
