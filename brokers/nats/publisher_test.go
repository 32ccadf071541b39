package natspub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// testPublisher returns a Publisher from New on a connection of t's own to
// the test server, with a stream of t's own whose subjects start with
// prefix.
func testPublisher(t *testing.T, cfg Config) (pub *Publisher, url, stream, prefix string) {
	t.Helper()
	url = natsserver.URL(t)
	stream, prefix = natsserver.Stream(t, url)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	pub, err = New(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pub, url, stream, prefix
}

func TestNoStreamIsAClearPerMessageError(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pub, _, _, prefix := testPublisher(t, Config{})
	missing := missingSubject(t)
	msgs := prepared(t,
		outbox.Message{Topic: missing, Key: "a"},
		outbox.Message{Topic: prefix + ".x", Key: "a"},
		outbox.Message{Topic: prefix + ".x", Key: "b"},
	)
	res := pub.Publish(ctx, msgs)
	if !errors.Is(res[0], ErrNoStream) {
		t.Fatalf("result for a subject without a stream = %v; want ErrNoStream", res[0])
	}
	for _, part := range []string{missing, "create a stream", "create_streams=true", "Config.CreateStreams"} {
		if !strings.Contains(res[0].Error(), part) {
			t.Errorf("the error %q does not mention %q", res[0], part)
		}
	}
	if errors.Is(res[0], outbox.ErrUnavailable) || errors.Is(res[0], outbox.ErrPermanent) {
		t.Errorf("a missing stream is reported as unavailable or permanent: %v", res[0])
	}
	if !errors.Is(res[1], outbox.ErrNotAttempted) || res[2] != nil {
		t.Fatalf("results after it = %v, %v; want ErrNotAttempted for the same key and nil for another", res[1], res[2])
	}
}

func TestCreateStreams(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := natsserver.URL(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	token := servers.Name(t, "auto")
	t.Cleanup(func() { _ = js.DeleteStream(ctx, token) })
	log, logger := newLogRecorder(t)
	pub, err := New(js, Config{CreateStreams: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []outbox.Message
	for i := range 6 {
		msgs = append(msgs, outbox.Message{Topic: fmt.Sprintf("%s.orders.v%d", token, i%2), Key: fmt.Sprintf("k%d", i%3), Payload: fmt.Appendf(nil, "%d", i)})
	}
	msgs = prepared(t, msgs...)
	for i, err := range pub.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	info := streamInfo(t, ctx, url, token)
	if info.Config.Duplicates != DefaultDuplicateWindow || info.State.Msgs != uint64(len(msgs)) {
		t.Fatalf("created stream: duplicates %v, %d messages; want %v and %d", info.Config.Duplicates, info.State.Msgs, DefaultDuplicateWindow, len(msgs))
	}
	ledger := conformance.NewLedger()
	ledger.Committed(msgs...)
	for _, r := range readStream(t, ctx, url, token) {
		ledger.Receive(r)
	}
	if rep := ledger.Report(); !rep.Clean() || rep.Duplicates != 0 {
		t.Fatalf("ledger: %s", rep)
	}
	if got := len(log.lines(0, "created a JetStream stream")); got != 1 {
		t.Fatalf("logged %d stream creations; want 1", got)
	}
}

func TestCreateStreamsReportsAStreamThatDoesNotCapture(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := natsserver.URL(t)
	stream, _ := natsserver.Stream(t, url) // exists, and captures other subjects
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(js, Config{
		CreateStreams: true,
		StreamFor: func(string) jetstream.StreamConfig {
			return jetstream.StreamConfig{Name: stream, Subjects: []string{"elsewhere.>"}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := pub.Publish(ctx, prepared(t, outbox.Message{Topic: missingSubject(t)}))
	if !errors.Is(res[0], ErrNoStream) || !strings.Contains(res[0].Error(), stream) {
		t.Fatalf("result = %v; want ErrNoStream naming the stream %s", res[0], stream)
	}
}

func TestDefaultStreamFor(t *testing.T) {
	for subject, want := range map[string]string{
		"orders.created": "orders",
		"orders":         "orders",
		"a*b.c":          "a_b",
	} {
		cfg := DefaultStreamFor(subject)
		token, _, _ := strings.Cut(subject, ".")
		if cfg.Name != want || len(cfg.Subjects) != 2 || cfg.Subjects[0] != token || cfg.Subjects[1] != token+".>" {
			t.Errorf("DefaultStreamFor(%q) = name %q subjects %v; want name %q capturing %s and %s.>", subject, cfg.Name, cfg.Subjects, want, token, token)
		}
		if cfg.Duplicates != DefaultDuplicateWindow || cfg.Storage != jetstream.FileStorage {
			t.Errorf("DefaultStreamFor(%q): duplicates %v storage %v", subject, cfg.Duplicates, cfg.Storage)
		}
	}
}

func TestUnpublishableMessagesFailPermanently(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pub, _, _, prefix := testPublisher(t, Config{})
	msgs := prepared(t,
		outbox.Message{Topic: prefix + ".*", Key: "wild"},
		outbox.Message{Topic: prefix + ".ok", Key: "wild"},
		outbox.Message{Topic: prefix + "..empty", Key: "empty"},
		outbox.Message{Topic: prefix + ".>", Key: "tail"},
		outbox.Message{Topic: prefix + ".ok", Key: "fine"},
	)
	// Core refuses reserved header names at Enqueue; a publisher must not
	// let them through either.
	reserved := outbox.Message{Topic: prefix + ".ok", Key: "hdr", Headers: map[string]string{"Nats-Expected-Stream": "other"}}
	reserved.ID = outbox.NewID()
	msgs = append(msgs, reserved)
	res := pub.Publish(ctx, msgs)
	for _, i := range []int{0, 2, 3, 5} {
		if !errors.Is(res[i], outbox.ErrPermanent) {
			t.Errorf("result for %q = %v; want a permanent error", msgs[i].Topic, res[i])
		}
	}
	if !errors.Is(res[1], outbox.ErrNotAttempted) {
		t.Errorf("result after the failed message of its key = %v; want ErrNotAttempted", res[1])
	}
	if res[4] != nil {
		t.Errorf("result for a good message = %v", res[4])
	}
}

func TestOversizedMessageIsPermanent(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pub, _, _, prefix := testPublisher(t, Config{})
	big := make([]byte, pub.nc.MaxPayload()+1)
	res := pub.Publish(ctx, prepared(t, outbox.Message{Topic: prefix + ".big", Key: "k", Payload: big}))
	if !errors.Is(res[0], outbox.ErrPermanent) || !errors.Is(res[0], nats.ErrMaxPayload) || !strings.Contains(res[0].Error(), "max_payload") {
		t.Fatalf("result = %v; want a permanent error naming max_payload", res[0])
	}
}

func TestStreamMaxMsgSizeIsPermanent(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pub, url, stream, prefix := testPublisher(t, Config{})
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	info := streamInfo(t, ctx, url, stream)
	cfg := info.Config
	cfg.MaxMsgSize = 64
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	res := pub.Publish(ctx, prepared(t,
		outbox.Message{Topic: prefix + ".a", Key: "k", Payload: make([]byte, 100)},
		outbox.Message{Topic: prefix + ".a", Key: "k", Payload: []byte("small")},
	))
	if !errors.Is(res[0], outbox.ErrPermanent) || !errors.Is(res[1], outbox.ErrNotAttempted) {
		t.Fatalf("results = %v; want a permanent error, then ErrNotAttempted", res)
	}
}

func TestSubjectMapping(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := natsserver.URL(t)
	stream, prefix := natsserver.Stream(t, url)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(js, Config{Subject: SubjectPrefix(prefix + ".")})
	if err != nil {
		t.Fatal(err)
	}
	msgs := prepared(t, outbox.Message{Topic: "orders.created", Key: "42", Payload: []byte("x"), Headers: map[string]string{"traceparent": "t"}})
	if res := pub.Publish(ctx, msgs); res[0] != nil {
		t.Fatal(res[0])
	}
	got := readStream(t, ctx, url, stream)
	if len(got) != 1 {
		t.Fatalf("stream holds %d messages", len(got))
	}
	r := got[0]
	if r.Topic != prefix+".orders.created" || r.ID != msgs[0].ID || r.Key != "42" || r.Headers["traceparent"] != "t" {
		t.Fatalf("received %+v; want subject %s.orders.created with the ID, key and headers", r, prefix)
	}
}

func TestConnectionDownHoldsEveryKey(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := natsserver.Start(t)
	_, prefix := natsserver.Stream(t, srv.URL())
	pub, err := Connect(ctx, Connection{URL: srv.URL(), Options: quickReconnect}, Config{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	srv.Stop()
	eventually(t, ctx, "the client to notice", func() bool { return !pub.nc.IsConnected() })
	msgs := prepared(t,
		outbox.Message{Topic: prefix + ".a", Key: "a"},
		outbox.Message{Topic: prefix + ".a", Key: "a"},
		outbox.Message{Topic: prefix + ".a", Key: "b"},
		outbox.Message{Topic: prefix + ".a"},
	)
	res := pub.Publish(ctx, msgs)
	for _, i := range []int{0, 2, 3} {
		if !errors.Is(res[i], outbox.ErrUnavailable) || errors.Is(res[i], outbox.ErrNotAttempted) {
			t.Errorf("result %d = %v; want ErrUnavailable (and not ErrNotAttempted, so that the relay pauses)", i, res[i])
		}
	}
	if !errors.Is(res[1], outbox.ErrNotAttempted) {
		t.Errorf("result 1 = %v; want ErrNotAttempted behind the first message of its key", res[1])
	}
	srv.Start()
}

func TestClose(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pub, _, _, prefix := testPublisher(t, Config{})
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !pub.nc.IsConnected() {
		t.Fatal("Close closed the connection of a JetStream context the caller owns")
	}
	res := pub.Publish(ctx, prepared(t, outbox.Message{Topic: prefix + ".a"}))
	if !errors.Is(res[0], outbox.ErrUnavailable) {
		t.Fatalf("Publish after Close = %v; want ErrUnavailable", res[0])
	}

	owned, err := Connect(ctx, Connection{URL: natsserver.URL(t)}, Config{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	nc := owned.JetStream().Conn()
	if err := owned.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsClosed() {
		t.Fatal("Close left the connection Connect opened open")
	}
}

// TestSmallWindowManyCallers shares a window of two messages between
// concurrent Publish calls: none may wait forever for a slot another holds,
// and per-key order holds in each.
func TestSmallWindowManyCallers(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pub, url, stream, prefix := testPublisher(t, Config{MaxInFlight: 2})
	ledger := conformance.NewLedger()
	var wg sync.WaitGroup
	for c := range 4 {
		var msgs []outbox.Message
		for i := range 150 {
			key := ""
			if i%4 != 0 {
				key = fmt.Sprintf("c%d-k%d", c, i%3)
			}
			msgs = append(msgs, outbox.Message{Topic: prefix + ".w", Key: key})
		}
		msgs = prepared(t, msgs...)
		ledger.Committed(msgs...)
		wg.Go(func() {
			for start := 0; start < len(msgs); start += 50 {
				for i, err := range pub.Publish(ctx, msgs[start:start+50]) {
					if err != nil {
						t.Errorf("caller %d message %d: %v", c, start+i, err)
					}
				}
			}
		})
	}
	wg.Wait()
	for _, r := range readStream(t, ctx, url, stream) {
		ledger.Receive(r)
	}
	if rep := ledger.Report(); !rep.Clean() || rep.Duplicates != 0 {
		t.Fatalf("ledger: %s", rep)
	}
	if n := len(pub.window); n != 0 {
		t.Fatalf("%d window slots still taken after every call returned", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	url := natsserver.URL(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(nil, Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("New(nil) = %v; want ErrInvalidConfig", err)
	}
	for name, cfg := range map[string]Config{
		"MaxInFlight": {MaxInFlight: -1},
		"AckTimeout":  {AckTimeout: -1},
		"StreamFor":   {StreamFor: DefaultStreamFor},
	} {
		_, err := New(js, cfg)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("New with a bad %s = %v; want ErrInvalidConfig naming it", name, err)
		}
	}
}

func TestCheckSubject(t *testing.T) {
	for subject, ok := range map[string]bool{
		"orders":          true,
		"orders.created":  true,
		"a*b.c>d":         true,
		"":                false,
		"orders.*":        false,
		"orders.>":        false,
		">":               false,
		"orders..created": false,
		".orders":         false,
		"orders.":         false,
		"orders created":  false,
		"orders\tcreated": false,
	} {
		if why := checkSubject(subject); (why == "") != ok {
			t.Errorf("checkSubject(%q) = %q; want ok=%v", subject, why, ok)
		}
	}
}

// silentSubject returns a subject that a plain NATS subscriber receives and
// never answers, so that a JetStream publish on it waits for an
// acknowledgement that does not come (the server does not say "no
// responders" since there is one).
func silentSubject(t *testing.T, url string) string {
	t.Helper()
	subject := "silent." + servers.Name(t, "noack")
	sub, err := connect(t, url).Subscribe(subject, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return subject
}

func TestAckTimeout(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pub, url, _, prefix := testPublisher(t, Config{AckTimeout: 200 * time.Millisecond})
	silent := silentSubject(t, url)
	res := pub.Publish(ctx, prepared(t,
		outbox.Message{Topic: silent, Key: "k"},
		outbox.Message{Topic: prefix + ".a", Key: "k"},
		outbox.Message{Topic: prefix + ".a", Key: "other"},
	))
	if res[0] == nil || errors.Is(res[0], outbox.ErrUnavailable) || errors.Is(res[0], outbox.ErrPermanent) ||
		!strings.Contains(res[0].Error(), "no acknowledgement") {
		t.Fatalf("result of an unacknowledged message = %v; want a plain, retryable error", res[0])
	}
	if !errors.Is(res[1], outbox.ErrNotAttempted) || res[2] != nil {
		t.Fatalf("results after it = %v, %v; want ErrNotAttempted for its key, nil for another", res[1], res[2])
	}
}

func TestContextEndsWhileWaiting(t *testing.T) {
	t.Parallel()
	pub, url, _, prefix := testPublisher(t, Config{MaxInFlight: 1})
	silent := silentSubject(t, url)
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	res := pub.Publish(ctx, prepared(t,
		outbox.Message{Topic: silent, Key: "a"},
		outbox.Message{Topic: prefix + ".a", Key: "b"}, // waits for the window, which never frees
	))
	if res[0] == nil || errors.Is(res[0], outbox.ErrNotAttempted) || !errors.Is(res[0], context.DeadlineExceeded) {
		t.Fatalf("result of the message in flight = %v; want an error for a message that may have been stored", res[0])
	}
	if !errors.Is(res[1], outbox.ErrNotAttempted) || !errors.Is(res[1], context.DeadlineExceeded) {
		t.Fatalf("result of the unsent message = %v; want ErrNotAttempted", res[1])
	}
	if n := len(pub.window); n != 0 {
		t.Fatalf("%d window slots still taken", n)
	}
}
