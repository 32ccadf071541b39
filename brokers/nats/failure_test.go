package natspub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// quickReconnect makes the client retry a lost server every 50ms, so that
// outage tests do not wait out nats.go's 2s default.
var quickReconnect = []nats.Option{nats.ReconnectWait(50 * time.Millisecond), nats.ReconnectJitter(0, 0)}

// writeKeyed commits n messages on subject over keys keys, in transactions of
// ten, and records them in ledger.
func writeKeyed(t *testing.T, ctx context.Context, ob conformance.Outbox, ledger *conformance.Ledger, subject string, from, n, keys int) {
	t.Helper()
	for i := from; i < from+n; i += 10 {
		var msgs []outbox.Message
		for j := i; j < min(i+10, from+n); j++ {
			msgs = append(msgs, outbox.Message{Topic: subject, Key: fmt.Sprintf("k%d", j%keys), Payload: fmt.Appendf(nil, "%d", j)})
		}
		ledger.Committed(write(t, ctx, ob, msgs...)...)
	}
}

// TestServerRestartMidRun stops the server while a relay publishes, writes
// more while it is down, and starts it again on the same port and store
// directory: nothing is lost, per-key order holds, and messages whose
// acknowledgement the restart swallowed are republished with their
// Nats-Msg-Id and dropped by the stream, so the stream holds each once.
func TestServerRestartMidRun(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := natsserver.Start(t)
	stream, prefix := natsserver.Stream(t, srv.URL())
	pubLog, pubLogger := newLogRecorder(t)
	pub, err := Connect(ctx, Connection{URL: srv.URL(), Options: quickReconnect}, Config{Logger: pubLogger, AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	store := memory.NewStore(memory.StoreConfig{})
	ob := conformance.NewMemoryOutbox(store)
	ledger := conformance.NewLedger()
	subject := prefix + ".orders"
	const n, keys = 3000, 40
	writeKeyed(t, ctx, ob, ledger, subject, 0, n, keys)

	relayLog, relayLogger := newLogRecorder(t)
	cfg := conformance.TestRelayConfig(t)
	cfg.Logger = relayLogger
	cfg.Concurrency = 3
	stop := conformance.StartRelay(t, store, pub, cfg)

	eventually(t, ctx, "the relay to deliver a quarter", func() bool { return pending(t, ctx, store) <= 3*n/4 })
	srv.Stop()
	writeKeyed(t, ctx, ob, ledger, subject, n, n/2, keys) // committed while the broker is down
	eventually(t, ctx, "the relay to notice the outage", func() bool {
		return len(relayLog.lines(slog.LevelWarn, "broker unavailable")) > 0
	})
	srv.Start()
	waitDrained(t, ctx, store)
	stop()

	for _, r := range readStream(t, ctx, srv.URL(), stream) {
		ledger.Receive(r)
	}
	rep := ledger.Report()
	t.Logf("restart mid-run: %s; JetStream dropped %d republished copies", rep, pub.Duplicates())
	if !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
	if rep.Duplicates != 0 {
		t.Fatalf("the stream holds %d duplicates; JetStream should have dropped them by Nats-Msg-Id: %s", rep.Duplicates, rep)
	}
	if got := len(pubLog.lines(slog.LevelWarn, "disconnected")); got != 1 {
		t.Errorf("the publisher logged %d disconnections for one outage; want 1", got)
	}
	if got := len(pubLog.lines(slog.LevelInfo, "reconnected")); got != 1 {
		t.Errorf("the publisher logged %d reconnections for one outage; want 1", got)
	}
	checkBackoffLog(t, relayLog)
}

// TestServerDownAtStart starts the publisher and the relay while no server
// answers: Connect succeeds, the relay pauses with backoff (logging once
// per step, counting no attempt), and everything is delivered once the
// server starts.
func TestServerDownAtStart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := natsserver.Start(t)
	stream, prefix := natsserver.Stream(t, srv.URL())
	srv.Stop()

	pubLog, pubLogger := newLogRecorder(t)
	pub, err := Connect(ctx, Connection{URL: srv.URL(), Options: quickReconnect}, Config{Logger: pubLogger})
	if err != nil {
		t.Fatalf("Connect with the server down: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	if err := pub.Ping(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("Ping with the server down = %v; want ErrUnavailable", err)
	}

	store := memory.NewStore(memory.StoreConfig{})
	ob := conformance.NewMemoryOutbox(store)
	ledger := conformance.NewLedger()
	const n, keys = 500, 20
	writeKeyed(t, ctx, ob, ledger, prefix+".users", 0, n, keys)

	relayLog, relayLogger := newLogRecorder(t)
	cfg := conformance.TestRelayConfig(t)
	cfg.Logger = relayLogger
	cfg.MaxAttempts = 2 // counted attempts would dead-letter quickly
	stop := conformance.StartRelay(t, store, pub, cfg)
	eventually(t, ctx, "three backoff steps", func() bool {
		return len(relayLog.lines(slog.LevelWarn, "broker unavailable")) >= 3
	})
	if got := pending(t, ctx, store); got != n {
		t.Fatalf("%d messages pending while the server is down; want %d", got, n)
	}
	srv.Start()
	waitDrained(t, ctx, store)
	stop()
	if err := pub.Ping(ctx); err != nil {
		t.Fatalf("Ping after the server started: %v", err)
	}

	for _, r := range readStream(t, ctx, srv.URL(), stream) {
		ledger.Receive(r)
	}
	rep := ledger.Report()
	t.Logf("down at start: %s", rep)
	if !rep.Clean() || rep.Duplicates != 0 {
		t.Fatalf("ledger: %s", rep)
	}
	if got := len(pubLog.lines(slog.LevelInfo, "connected to NATS")); got != 1 {
		t.Errorf("the publisher logged %d connections; want 1", got)
	}
	checkBackoffLog(t, relayLog)
}

// checkBackoffLog checks that the relay logged the outage once per backoff
// step (the failures counter of its warnings goes 1, 2, 3, ... without
// repeats) and never as a failed publish, which would count attempts.
func checkBackoffLog(t *testing.T, log *logRecorder) {
	t.Helper()
	steps := log.lines(slog.LevelWarn, "broker unavailable")
	if len(steps) == 0 {
		t.Fatal("the relay logged no outage")
	}
	streak := int64(0)
	for _, l := range steps {
		f := l.attrs["failures"].Int64()
		if f != streak+1 && f != 1 {
			t.Errorf("backoff warnings have failures=%d after %d; want one line per step", f, streak)
		}
		streak = f
	}
	warnings := log.lines(slog.LevelWarn, "")
	if len(warnings) != len(steps) {
		for _, l := range warnings {
			t.Logf("warning: %s %v", l.msg, l.attrs)
		}
		t.Errorf("the relay logged %d warnings besides its %d backoff steps; the outage should show only as backoff steps", len(warnings)-len(steps), len(steps))
	}
}

func pending(t *testing.T, ctx context.Context, store *memory.Store) int64 {
	t.Helper()
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}
