package natspub

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// harness is the conformance harness of this adapter on the server at the
// URL that url returns.
func harness() conformance.PublisherHarness {
	return conformance.PublisherHarness{New: func(t *testing.T) conformance.Broker {
		return newBroker(t, natsserver.URL(t), Config{})
	}}
}

// newBroker gives t a stream of its own on the server at url and a
// Publisher from New over a connection of its own.
func newBroker(t *testing.T, url string, cfg Config) conformance.Broker {
	t.Helper()
	stream, prefix := natsserver.Stream(t, url)
	nc := connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var topics atomic.Int64
	return conformance.Broker{
		Publisher:       pub,
		Topic:           func(t *testing.T) string { return fmt.Sprintf("%s.t%d", prefix, topics.Add(1)) },
		Consume:         consumeFunc(url, stream),
		MissingTopic:    func(t *testing.T) string { return missingSubject(t) },
		MaxMessageBytes: int(nc.MaxPayload()),
	}
}

// missingSubject returns a subject no stream captures.
func missingSubject(t *testing.T) string {
	return "nostream." + servers.Name(t, "missing")
}

// connect opens a connection to url that t closes when it ends.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("txoutbox natspub test"))
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// consumeFunc is a conformance.Broker's Consume over stream.
func consumeFunc(url, stream string) func(context.Context, []string, func(conformance.Received)) error {
	return func(ctx context.Context, topics []string, fn func(conformance.Received)) error {
		return consume(ctx, url, stream, topics, fn)
	}
}

// consume reads stream from its first message with an ordered consumer on a
// connection of its own and calls fn for every message on one of topics
// (every message when topics is nil), until ctx ends.
func consume(ctx context.Context, url, stream string, topics []string, fn func(conformance.Received)) error {
	nc, err := nats.Connect(url, nats.Name("txoutbox natspub test consumer"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("ordered consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if topics == nil || slices.Contains(topics, msg.Subject()) {
			fn(received(msg))
		}
	}
}

// received is what a consumer of the stream makes of msg.
func received(msg jetstream.Msg) conformance.Received {
	h := msg.Headers()
	r := conformance.Received{
		ID:      h.Get(HeaderMsgID),
		Topic:   msg.Subject(),
		Key:     h.Get(HeaderKey),
		Payload: msg.Data(),
		Headers: make(map[string]string, len(h)),
	}
	for name, values := range h {
		if len(values) > 0 {
			r.Headers[name] = values[0]
		}
	}
	return r
}

// readStream returns every message the stream holds now, in stream order.
func readStream(t *testing.T, ctx context.Context, url, stream string) []conformance.Received {
	t.Helper()
	want := streamInfo(t, ctx, url, stream).State.Msgs
	var mu sync.Mutex
	var got []conformance.Received
	if want == 0 {
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := consume(cctx, url, stream, nil, func(r conformance.Received) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r)
		if uint64(len(got)) == want {
			cancel()
		}
	})
	if ctx.Err() != nil || (err != nil && cctx.Err() == nil) {
		t.Fatalf("reading stream %s: %d of %d messages: %v", stream, len(got), want, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}

func streamInfo(t *testing.T, ctx context.Context, url, stream string) *jetstream.StreamInfo {
	t.Helper()
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	return info
}

// testContext bounds a test; it is a deadlock guard, not a timing assertion.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for wait := 5 * time.Millisecond; !cond(); wait = min(2*wait, 100*time.Millisecond) {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// prepared returns msgs with IDs and timestamps, as a store hands them out.
func prepared(t testing.TB, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	if err := outbox.Prepare(msgs, outbox.Limits{MaxPayloadBytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// logRecorder is a slog.Handler that keeps what it is given, to count the
// relay's and the publisher's log lines.
type logRecorder struct {
	t       testing.TB
	mu      sync.Mutex
	records []logLine
}

type logLine struct {
	level slog.Level
	msg   string
	attrs map[string]slog.Value
}

func newLogRecorder(t testing.TB) (*logRecorder, *slog.Logger) {
	r := &logRecorder{t: t}
	return r, slog.New(r)
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	line := logLine{level: rec.Level, msg: rec.Message, attrs: map[string]slog.Value{}}
	var text strings.Builder
	rec.Attrs(func(a slog.Attr) bool {
		line.attrs[a.Key] = a.Value
		fmt.Fprintf(&text, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.records = append(r.records, line)
	r.mu.Unlock()
	if rec.Level >= slog.LevelWarn {
		r.t.Logf("log: %s %s%s", rec.Level, rec.Message, text.String())
	}
	return nil
}

// lines returns the records at level or above whose message contains part.
func (r *logRecorder) lines(level slog.Level, part string) []logLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logLine
	for _, l := range r.records {
		if l.level >= level && strings.Contains(l.msg, part) {
			out = append(out, l)
		}
	}
	return out
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
