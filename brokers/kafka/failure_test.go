package kafkapub_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// logCapture is a slog.Handler that keeps the messages of warnings and
// errors, for tests that check how often the relay logs.
type logCapture struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newLogCapture() logCapture { return logCapture{mu: new(sync.Mutex), msgs: new([]string)} }

func (c logCapture) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (c logCapture) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c logCapture) WithGroup(string) slog.Handler                { return c }
func (c logCapture) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.msgs = append(*c.msgs, line)
	return nil
}

// count returns how many captured lines contain substr.
func (c logCapture) count(substr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range *c.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func (c logCapture) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), *c.msgs...)
}

// countingPublisher counts the failed results of the publisher it wraps.
type countingPublisher struct {
	outbox.Publisher
	failed atomic.Int64
}

func (p *countingPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	res := p.Publisher.Publish(ctx, msgs)
	for _, err := range res {
		if err != nil {
			p.failed.Add(1)
		}
	}
	return res
}

// eventually polls cond until it holds or ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for wait := 5 * time.Millisecond; !cond(); wait = min(2*wait, 200*time.Millisecond) {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// outageRelayConfig is the relay configuration of the outage tests, its
// warnings captured. A record written to a broker that then goes away is
// never failed by the client (it waits for the broker, so that its retry
// cannot write it twice): the publish deadline ends such a batch, and is
// short here to keep the tests short.
func outageRelayConfig(t *testing.T, logs logCapture) outbox.RelayConfig {
	cfg := conformance.TestRelayConfig(t)
	cfg.PublishTimeout = 3 * time.Second
	cfg.Logger = slog.New(logs)
	return cfg
}

// outageDialConfig is the publisher configuration of the outage tests: the
// client gives up on records it could not send after a second.
func outageDialConfig(brokers []string) kafkapub.DialConfig {
	cfg := testDialConfig(brokers)
	cfg.DeliveryTimeout = time.Second
	return cfg
}

// writeKeys commits n messages spread over keys keys in transactions of
// up to five, and records them in the ledger.
func writeKeys(t *testing.T, ctx context.Context, ob conformance.Outbox, ledger *conformance.Ledger, topic string, keys, n int, tag string) {
	t.Helper()
	for i := 0; i < n; i += 5 {
		var msgs []outbox.Message
		for j := i; j < min(i+5, n); j++ {
			msgs = append(msgs, outbox.Message{Topic: topic, Key: fmt.Sprintf("k%d", j%keys), Payload: fmt.Appendf(nil, "%s-%d", tag, j)})
		}
		tx, err := ob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ledger.Committed(msgs...)
	}
}

// checkLogsPerStep checks that the relay logged the outage, and once per
// backoff step rather than once per failed record.
func checkLogsPerStep(t *testing.T, logs logCapture, pub *countingPublisher) {
	t.Helper()
	warnings, failed := len(logs.lines()), pub.failed.Load()
	t.Logf("%d failed results, %d warnings and errors logged", failed, warnings)
	if logs.count("broker unavailable") == 0 {
		t.Fatalf("the relay never logged the outage; it logged %q", logs.lines())
	}
	if int64(warnings)*10 > failed {
		t.Fatalf("%d warnings for %d failed results; the relay should log once per backoff step, not per record: %q", warnings, failed, logs.lines())
	}
}

// TestRelayResumesAfterClusterRestart stops the cluster while a relay
// publishes, keeps writing, and starts the cluster again on the same port:
// every committed message arrives, in order per key.
func TestRelayResumesAfterClusterRestart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	f := kafkaserver.RestartableFake(t)
	brokers := f.Addrs()
	tp := topic(t, brokers, 0)
	ob := conformance.NewMemoryOutbox(memory.NewStore(memory.StoreConfig{}))
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, ledger, tp)
	logs := newLogCapture()
	pub := &countingPublisher{Publisher: dial(t, outageDialConfig(brokers))}
	conformance.StartRelay(t, ob.Store, pub, outageRelayConfig(t, logs))

	writeKeys(t, ctx, ob, ledger, tp, 20, 300, "before")
	eventually(t, ctx, "the relay to deliver before the outage", func() bool { return ledger.Report().Delivered >= 100 })
	f.Stop()
	writeKeys(t, ctx, ob, ledger, tp, 20, 300, "during")
	eventually(t, ctx, "the relay to notice the outage", func() bool { return logs.count("broker unavailable") >= 2 })
	f.Start()
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	rep := ledger.Report()
	t.Logf("ledger: %s", rep)
	if !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
	checkLogsPerStep(t, logs, pub)
}

// TestRelayWaitsForUnreachableBroker starts a relay on a broker address
// where nothing listens yet: it keeps the messages, logs the outage once
// per backoff step, and delivers everything once a cluster starts there.
func TestRelayWaitsForUnreachableBroker(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	port, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tp := servers.Name(t, "outbox")
	ob := conformance.NewMemoryOutbox(memory.NewStore(memory.StoreConfig{}))
	ledger := conformance.NewLedger()
	logs := newLogCapture()
	pub := &countingPublisher{Publisher: dial(t, outageDialConfig([]string{addr}))}
	conformance.StartRelay(t, ob.Store, pub, outageRelayConfig(t, logs))

	writeKeys(t, ctx, ob, ledger, tp, 10, 200, "early")
	eventually(t, ctx, "the relay to notice the broker is down", func() bool { return logs.count("broker unavailable") >= 2 })
	if d := ledger.Report().Delivered; d != 0 {
		t.Fatalf("%d messages delivered with no broker", d)
	}
	for _, line := range logs.lines() {
		if strings.Contains(line, "dead-lettered") {
			t.Fatalf("a message was dead-lettered while the broker was down: %s", line)
		}
	}

	kafkaserver.Fake(t, kfake.Ports(port), kfake.SeedTopics(testPartitions, tp))
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer([]string{addr})}, ledger, tp)
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	rep := ledger.Report()
	t.Logf("ledger: %s", rep)
	if !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
	checkLogsPerStep(t, logs, pub)
}

// deadLetterFixture runs a relay (MaxAttempts 3) from a fresh in-memory
// outbox to pub, with a topic of its own whose messages the ledger
// follows.
type deadLetterFixture struct {
	ob     conformance.Outbox
	store  *memory.Store
	ledger *conformance.Ledger
	topic  string
}

func startDeadLetterFixture(t *testing.T, ctx context.Context, brokers []string, pub outbox.Publisher) deadLetterFixture {
	store := memory.NewStore(memory.StoreConfig{Limits: outbox.Limits{MaxPayloadBytes: 4 << 20}})
	fx := deadLetterFixture{ob: conformance.NewMemoryOutbox(store), store: store, ledger: conformance.NewLedger(), topic: topic(t, brokers, 0)}
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, fx.ledger, fx.topic)
	cfg := conformance.TestRelayConfig(t)
	cfg.MaxAttempts = 3
	cfg.Logger = slog.New(slog.DiscardHandler) // the failures are the point
	conformance.StartRelay(t, store, pub, cfg)
	return fx
}

// write commits msgs in one transaction.
func (fx deadLetterFixture) write(t *testing.T, ctx context.Context, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	tx, err := fx.ob.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// deadLetterOf waits for id to be dead-lettered while the other keys flow,
// and returns the dead letter.
func (fx deadLetterFixture) deadLetterOf(t *testing.T, ctx context.Context, id string) outbox.DeadLetter {
	t.Helper()
	for i := range 20 {
		fx.ledger.Committed(fx.write(t, ctx, outbox.Message{Topic: fx.topic, Key: fmt.Sprintf("ok%d", i%4)})...)
	}
	if err := fx.ledger.WaitAll(ctx); err != nil {
		t.Fatalf("other keys did not flow: %v", err)
	}
	var dead []outbox.DeadLetter
	eventually(t, ctx, "the dead letter", func() bool {
		var err error
		dead, err = fx.store.ListDead(ctx, outbox.ListDeadParams{IDs: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		return len(dead) == 1
	})
	if rep := fx.ledger.Report(); !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
	return dead[0]
}

// TestUnknownTopicIsRetriedThenDeadLettered: a message to a topic that
// does not exist fails quickly, is retried, and is dead-lettered after
// MaxAttempts with the broker's reason; other keys keep flowing.
func TestUnknownTopicIsRetriedThenDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	brokers := fakeBrokers(t)
	fx := startDeadLetterFixture(t, ctx, brokers, dial(t, testDialConfig(brokers)))
	missing := servers.Name(t, "missing")
	msg := fx.write(t, ctx, outbox.Message{Topic: missing, Key: "m", Payload: []byte("nowhere to go")})
	dead := fx.deadLetterOf(t, ctx, msg[0].ID)
	if dead.Attempts != 3 {
		t.Errorf("dead-lettered after %d attempts, want MaxAttempts (3)", dead.Attempts)
	}
	for _, want := range []string{"UNKNOWN_TOPIC_OR_PARTITION", missing, "does not exist"} {
		if !strings.Contains(dead.LastError, want) {
			t.Errorf("the dead letter's error %q does not mention %q", dead.LastError, want)
		}
	}
}

// TestOversizedRecordIsDeadLettered: a record larger than the topic's
// max.message.bytes, or than the client's batch limit, is dead-lettered at
// its first attempt with the reason; other keys keep flowing.
// The payload is random: the broker compares the compressed batch with
// its limit.
func TestOversizedRecordIsDeadLettered(t *testing.T) {
	t.Parallel()
	const limit = 16 << 10
	for _, tc := range []struct {
		name      string
		topicMax  int
		clientMax int
	}{
		{"RefusedByTheBroker", limit, 0}, // the client would send up to ~1 MB
		{"RefusedByTheClient", 0, limit}, // the topic would take ~1 MB
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			var opts []kfake.Opt
			if tc.topicMax > 0 {
				opts = append(opts, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(tc.topicMax)}))
			}
			brokers := kafkaserver.Fake(t, opts...).ListenAddrs()
			cfg := testDialConfig(brokers)
			cfg.MaxMessageBytes = tc.clientMax
			fx := startDeadLetterFixture(t, ctx, brokers, dial(t, cfg))
			msg := fx.write(t, ctx, outbox.Message{Topic: fx.topic, Key: "big", Payload: randomBytes(limit + 1)})
			dead := fx.deadLetterOf(t, ctx, msg[0].ID)
			if dead.Attempts != 1 {
				t.Errorf("dead-lettered after %d attempts, want 1 (the error is permanent)", dead.Attempts)
			}
			if !strings.Contains(dead.LastError, "MESSAGE_TOO_LARGE") || !strings.Contains(dead.LastError, "too large") {
				t.Errorf("the dead letter's error %q does not give the reason", dead.LastError)
			}
		})
	}
}

// TestPublishFailsFastWhenUnreachable: with nothing listening, Publish
// reports every message as unavailable (released by the relay without
// counting an attempt), within the delivery timeout rather than the
// caller's deadline.
func TestPublishFailsFastWhenUnreachable(t *testing.T) {
	t.Parallel()
	port, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := outageDialConfig([]string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	pub := dial(t, cfg)
	msgs := []outbox.Message{{Topic: "t", Key: "a"}, {Topic: "t", Key: "a"}, {Topic: "t", Key: "b"}, {Topic: "t"}}
	prepare(t, msgs)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := pub.Publish(ctx, msgs)
	if ctx.Err() != nil {
		t.Fatalf("Publish returned only when its context ended: %v", res)
	}
	for i, err := range res {
		want := outbox.ErrUnavailable
		if i == 1 {
			want = outbox.ErrNotAttempted // behind the first message of key a
		}
		if !errors.Is(err, want) {
			t.Errorf("result %d = %v; want %v", i, err, want)
		}
	}
	if err := pub.Ping(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("Ping = %v; want ErrUnavailable", err)
	}
}

// randomBytes returns n bytes that do not compress.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
