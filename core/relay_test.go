package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// fastConfig is a relay configuration that retries quickly.
func fastConfig(t *testing.T) outbox.RelayConfig {
	return outbox.RelayConfig{
		BatchSize:       10,
		MinPollInterval: time.Millisecond,
		PollInterval:    20 * time.Millisecond,
		Lease:           20 * time.Second,
		PublishTimeout:  5 * time.Second,
		MinRetryDelay:   time.Millisecond,
		MaxRetryDelay:   5 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// run starts the relay and returns a function that stops it and waits.
func run(t *testing.T, store outbox.Store, pub outbox.Publisher, cfg outbox.RelayConfig) (*outbox.Relay, func()) {
	t.Helper()
	r, err := outbox.NewRelay(store, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

func enqueue(t *testing.T, s *memory.Store, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	tx := s.Begin()
	if err := s.Enqueue(context.Background(), tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// payloadsByKey groups published payloads by key, in publication order.
func payloadsByKey(msgs []outbox.Message) map[string][]string {
	m := make(map[string][]string)
	for _, msg := range msgs {
		m[msg.Key] = append(m[msg.Key], string(msg.Payload))
	}
	return m
}

func TestRelayDeliversEveryKeyInOrder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	var want []outbox.Message
	for i := range 300 {
		want = append(want, outbox.Message{Topic: "t", Key: fmt.Sprint("k", i%7), Payload: fmt.Appendf(nil, "%03d", i)})
	}
	enqueue(t, store, want...)
	cfg := fastConfig(t)
	cfg.Concurrency = 4
	run(t, store, pub, cfg)
	if err := pub.WaitFor(ctx, len(want)); err != nil {
		t.Fatal(err)
	}
	got, exp := payloadsByKey(pub.Messages()), payloadsByKey(want)
	for key := range exp {
		if strings.Join(got[key], ",") != strings.Join(exp[key], ",") {
			t.Fatalf("key %s published as %v, want %v", key, got[key], exp[key])
		}
	}
	eventually(t, ctx, "every record marked delivered", func() bool {
		st, _ := store.Stats(ctx)
		return st.Pending == 0
	})
}

func TestRelayRetriesThenDeadLettersAndTheKeyContinues(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	rejected := errors.New("schema registry says no")
	pub.SetReject(func(m outbox.Message) error {
		if string(m.Payload) == "poison" {
			return rejected
		}
		return nil
	})
	enqueue(t, store,
		outbox.Message{Topic: "t", Key: "k", Payload: []byte("poison")},
		outbox.Message{Topic: "t", Key: "k", Payload: []byte("next")},
		outbox.Message{Topic: "t", Key: "other", Payload: []byte("fine")})
	cfg := fastConfig(t)
	cfg.MaxAttempts = 3
	run(t, store, pub, cfg)
	if err := pub.WaitFor(ctx, 2); err != nil {
		t.Fatal(err)
	}
	dead, err := store.ListDead(ctx, outbox.ListDeadParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || string(dead[0].Payload) != "poison" || dead[0].Attempts != 3 || dead[0].LastError != rejected.Error() {
		t.Fatalf("dead letters = %+v; want the poison message after 3 attempts with its error", dead)
	}
	// "next" waited behind "poison" until it died (default order mode).
	if got := payloadsByKey(pub.Messages())["k"]; len(got) != 1 || got[0] != "next" {
		t.Fatalf("key k published %v; want only next", got)
	}
}

func TestRelayDeadLettersPermanentErrorsAtOnce(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store := memory.NewStore(memory.StoreConfig{})
	pub := memory.NewPublisher(memory.PublisherConfig{MaxMessageBytes: 4}) // refuses larger payloads permanently
	enqueue(t, store, outbox.Message{Topic: "t", Key: "k", Payload: []byte("too large")})
	run(t, store, pub, fastConfig(t))
	var dead []outbox.DeadLetter
	eventually(t, ctx, "a dead letter", func() bool {
		dead, _ = store.ListDead(ctx, outbox.ListDeadParams{})
		return len(dead) == 1
	})
	if dead[0].Attempts != 1 {
		t.Fatalf("a permanent failure was dead-lettered after %d attempts; want 1", dead[0].Attempts)
	}
}

func TestRelayHoldsBackKeyBehindFailure(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	var failures atomic.Int32
	pub.SetReject(func(m outbox.Message) error {
		if string(m.Payload) == "k-0" && failures.Add(1) <= 3 {
			return errors.New("transient")
		}
		return nil
	})
	var want []outbox.Message
	for i := range 5 {
		want = append(want, outbox.Message{Topic: "t", Key: "k", Payload: fmt.Appendf(nil, "k-%d", i)})
	}
	enqueue(t, store, want...)
	obs := &recordingObserver{}
	cfg := fastConfig(t)
	cfg.Observer = obs
	run(t, store, pub, cfg)
	if err := pub.WaitFor(ctx, len(want)); err != nil {
		t.Fatal(err)
	}
	if got := payloadsByKey(pub.Messages())["k"]; strings.Join(got, ",") != "k-0,k-1,k-2,k-3,k-4" {
		t.Fatalf("published %v; want k-0..k-4 in order", got)
	}
	if obs.count(outbox.Released) == 0 || obs.count(outbox.Retried) != 3 {
		t.Fatalf("outcomes %v; want 3 retries of k-0 and its successors released", obs.statuses())
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for _, b := range obs.batches {
		for i, r := range b.Records {
			if b.Outcomes[i].Status == outbox.Delivered && string(r.Payload) != "k-0" && r.Attempts != 0 {
				t.Fatalf("%s, held back behind k-0, was delivered at attempt %d; held-back batches must not count", r.Payload, r.Attempts)
			}
		}
	}
}

func TestRelayBrokerOutageCountsNoAttemptsAndLogsPerStep(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	var calls atomic.Int32
	down := errors.New("dial tcp 127.0.0.1:9092: connection refused")
	pub.SetReject(func(m outbox.Message) error {
		if calls.Add(1) <= 60 { // three rounds of 20 messages
			return fmt.Errorf("%w: %w", outbox.ErrUnavailable, down)
		}
		return nil
	})
	var msgs []outbox.Message
	for i := range 20 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: fmt.Sprint(i)})
	}
	enqueue(t, store, msgs...)
	logs := &logCounter{}
	cfg := fastConfig(t)
	cfg.BatchSize = 20
	cfg.MaxAttempts = 2 // fewer than the failed rounds: they must not count
	cfg.Logger = slog.New(logs)
	run(t, store, pub, cfg)
	if err := pub.WaitFor(ctx, len(msgs)); err != nil {
		t.Fatal(err)
	}
	if dead, _ := store.ListDead(ctx, outbox.ListDeadParams{}); len(dead) != 0 {
		t.Fatalf("%d messages were dead-lettered during a broker outage", len(dead))
	}
	if n := logs.count("broker unavailable"); n < 1 || n > 3 {
		t.Fatalf("logged the outage %d times for 60 failed publishes; want one line per backoff step (1 to 3)", n)
	}
}

func TestRelayGivesUpOnRecordThatCrashesRelays(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	enqueue(t, store, outbox.Message{Topic: "t", Key: "k", Payload: []byte("crashes relays")})
	// Three relays took its lane and died without an outcome; the second
	// and third took the lane from an expired owner and charged it.
	for i := range 3 {
		owner := fmt.Sprint("crashed-", i)
		eventually(t, ctx, "the lane to be free", func() bool {
			view, err := store.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: time.Millisecond})
			if err != nil {
				return false
			}
			var lanes []outbox.Lane
			for _, l := range view.Lanes {
				lanes = append(lanes, l.Lane)
			}
			taken, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: time.Millisecond, Lanes: lanes, Charge: 10})
			return err == nil && len(taken) == len(lanes)
		})
	}
	cfg := fastConfig(t)
	cfg.MaxAttempts = 2
	run(t, store, pub, cfg)
	var dead []outbox.DeadLetter
	eventually(t, ctx, "a dead letter", func() bool {
		dead, _ = store.ListDead(ctx, outbox.ListDeadParams{})
		return len(dead) == 1
	})
	if !strings.Contains(dead[0].LastError, "lost in flight") || pub.Len() != 0 {
		t.Fatalf("dead letter %q, published %d; want it dead-lettered unpublished, explaining why", dead[0].LastError, pub.Len())
	}
}

func TestRelayStopFinishesInFlightBatch(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store := memory.NewStore(memory.StoreConfig{})
	pub := &gatedPublisher{inner: memory.NewPublisher(memory.PublisherConfig{}), entered: make(chan struct{}), gate: make(chan struct{})}
	enqueue(t, store, outbox.Message{Topic: "t", Key: "k"})
	r, err := outbox.NewRelay(store, pub, fastConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	<-pub.entered
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while a batch was still being published")
	case <-time.After(50 * time.Millisecond): // not an assertion on speed: Run must still be waiting
	}
	close(pub.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || pub.inner.Len() != 1 {
		t.Fatalf("after a graceful stop: pending %d, published %d; want the batch finished and recorded", st.Pending, pub.inner.Len())
	}
	if len(st.Relays) != 0 {
		t.Fatalf("after a graceful stop the store still lists live relays %+v; want the relay gone and its lanes given back", st.Relays)
	}
}

func TestRelayNotifyWakesIdleRelay(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{})
	store := struct{ outbox.Store }{mem} // hides the store's Listener
	pub := memory.NewPublisher(memory.PublisherConfig{})
	obs := &recordingObserver{claimed: make(chan struct{}, 100)}
	cfg := fastConfig(t)
	cfg.PollInterval, cfg.MinPollInterval = time.Hour, time.Hour // only a wake-up can help
	cfg.Concurrency = 1
	cfg.Observer = obs
	r, _ := run(t, store, pub, cfg)
	<-obs.claimed // the relay found nothing and went idle
	enqueue(t, mem, outbox.Message{Topic: "t"})
	r.Notify()
	if err := pub.WaitFor(ctx, 1); err != nil {
		t.Fatalf("Notify did not wake the relay: %v", err)
	}
}

func TestRelayWakesOnStoreNotifications(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	obs := &recordingObserver{claimed: make(chan struct{}, 100)}
	cfg := fastConfig(t)
	cfg.PollInterval, cfg.MinPollInterval = time.Hour, time.Hour
	cfg.Observer = obs
	run(t, store, pub, cfg)
	<-obs.claimed
	// The listener may start after this first commit; keep committing until
	// a notification gets through.
	for i := 0; pub.Len() == 0; i++ {
		enqueue(t, store, outbox.Message{Topic: "t", Key: fmt.Sprint(i)})
		wait, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_ = pub.WaitFor(wait, 1)
		cancel()
		if ctx.Err() != nil {
			t.Fatal("no store notification woke the relay")
		}
	}
}

func TestRelayRunsOnce(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	obs := &recordingObserver{claimed: make(chan struct{}, 100)}
	cfg := fastConfig(t)
	cfg.Observer = obs
	r, _ := run(t, store, pub, cfg)
	<-obs.claimed
	if err := r.Run(ctx); !errors.Is(err, outbox.ErrRelayRunning) {
		t.Fatalf("a second Run returned %v; want ErrRelayRunning", err)
	}
}

func TestRelayCleansUpDeliveredRecords(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	enqueue(t, store, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"})
	cfg := fastConfig(t)
	cfg.Retention = time.Nanosecond
	cfg.CleanupInterval = 5 * time.Millisecond
	cfg.CleanupBatch = 2
	run(t, store, pub, cfg)
	if err := pub.WaitFor(ctx, 3); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "delivered records deleted", func() bool { return store.Len() == 0 })
}

func TestRelayTreatsWrongResultCountAsFailure(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store := memory.NewStore(memory.StoreConfig{})
	inner := memory.NewPublisher(memory.PublisherConfig{})
	var broken atomic.Bool
	broken.Store(true)
	pub := publishFunc(func(ctx context.Context, msgs []outbox.Message) []error {
		if broken.Swap(false) {
			return nil // a broken publisher: no results at all
		}
		return inner.Publish(ctx, msgs)
	})
	enqueue(t, store, outbox.Message{Topic: "t", Key: "k"})
	obs := &recordingObserver{}
	cfg := fastConfig(t)
	cfg.Observer = obs
	run(t, store, pub, cfg)
	if err := inner.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if obs.count(outbox.Retried) != 1 {
		t.Fatalf("outcomes %v; want the first batch retried", obs.statuses())
	}
}

func TestRelayReportsBatchesToObserver(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	msgs := enqueue(t, store, outbox.Message{Topic: "t", Key: "a"}, outbox.Message{Topic: "t", Key: "b"})
	obs := &recordingObserver{}
	cfg := fastConfig(t)
	cfg.Observer = obs
	r, _ := run(t, store, pub, cfg)
	if err := pub.WaitFor(ctx, 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "two delivered outcomes", func() bool { return obs.count(outbox.Delivered) == 2 })
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for _, b := range obs.batches {
		if b.Owner != r.Owner() || b.PublishedAt.Before(msgs[0].CreatedAt) || len(b.Records) != len(b.Outcomes) {
			t.Fatalf("batch event %+v is inconsistent", b)
		}
	}
}

type publishFunc func(context.Context, []outbox.Message) []error

func (f publishFunc) Publish(ctx context.Context, msgs []outbox.Message) []error { return f(ctx, msgs) }

// gatedPublisher signals when Publish starts and waits for the gate.
type gatedPublisher struct {
	inner   *memory.Publisher
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (p *gatedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	p.once.Do(func() { close(p.entered) })
	<-p.gate
	return p.inner.Publish(ctx, msgs)
}

type recordingObserver struct {
	mu      sync.Mutex
	batches []outbox.BatchEvent
	claimed chan struct{} // receives after each claim, if set
}

func (o *recordingObserver) ObserveLanes(outbox.LaneEvent) {}

func (o *recordingObserver) ObserveRead(outbox.ReadEvent) {
	if o.claimed != nil {
		select {
		case o.claimed <- struct{}{}:
		default:
		}
	}
}

func (o *recordingObserver) ObserveBatch(b outbox.BatchEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches = append(o.batches, b)
}

func (o *recordingObserver) count(s outbox.OutcomeStatus) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, b := range o.batches {
		for _, out := range b.Outcomes {
			if out.Status == s {
				n++
			}
		}
	}
	return n
}

// outcomeOf returns the last outcome of the record id, if it had one.
func (o *recordingObserver) outcomeOf(id string) (outbox.Outcome, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.batches) - 1; i >= 0; i-- {
		b := o.batches[i]
		for j, r := range b.Records {
			if r.ID == id {
				return b.Outcomes[j], true
			}
		}
	}
	return outbox.Outcome{}, false
}

func (o *recordingObserver) statuses() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var s []string
	for _, b := range o.batches {
		for _, out := range b.Outcomes {
			s = append(s, out.Status.String())
		}
	}
	return s
}

// logCounter is a slog.Handler that counts warnings by message.
type logCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Level >= slog.LevelWarn {
		l.msgs = append(l.msgs, r.Message)
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func (l *logCounter) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// unsupportedListener is a store whose deployment cannot notify.
type unsupportedListener struct {
	outbox.Store
	calls atomic.Int32
}

func (u *unsupportedListener) Listen(context.Context) (<-chan struct{}, error) {
	u.calls.Add(1)
	return nil, fmt.Errorf("%w: no change streams on a standalone server", outbox.ErrUnsupported)
}

func TestRelayPollsOnlyWhenNotificationsAreUnsupported(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{})
	store := &unsupportedListener{Store: mem}
	pub := memory.NewPublisher(memory.PublisherConfig{})
	logs := &logCounter{}
	cfg := fastConfig(t)
	cfg.Logger = slog.New(logs)
	_, stop := run(t, store, pub, cfg)
	enqueue(t, mem, outbox.Message{Topic: "t"})
	if err := pub.WaitFor(ctx, 1); err != nil {
		t.Fatalf("the relay did not fall back to polling: %v", err)
	}
	eventually(t, ctx, "the relay to try Listen", func() bool { return store.calls.Load() > 0 })
	stop()
	if n := logs.count("notifications"); n != 0 {
		t.Fatalf("logged %d warnings about notifications; unsupported is not a failure", n)
	}
}

// overlapPublisher fails the test's check when two concurrent Publish calls
// carry messages of one key.
type overlapPublisher struct {
	inner *memory.Publisher
	mu    sync.Mutex
	busy  map[string]bool
	seen  int // calls that overlapped with another call
	bad   []string
}

func (p *overlapPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	mine := make(map[string]bool)
	for _, m := range msgs {
		if p.busy[m.Key] && !mine[m.Key] {
			p.bad = append(p.bad, m.Key)
		}
		mine[m.Key] = true
	}
	if len(p.busy) > 0 {
		p.seen++
	}
	for k := range mine {
		p.busy[k] = true
	}
	p.mu.Unlock()
	time.Sleep(time.Millisecond) // keep the call in flight while others start
	res := p.inner.Publish(ctx, msgs)
	p.mu.Lock()
	for k := range mine {
		delete(p.busy, k)
	}
	p.mu.Unlock()
	return res
}

// TestRelayNeverHasAKeyInTwoBatches: with several batches in flight, a key's
// records are never in two Publish calls at once, and each key arrives in
// order.
func TestRelayNeverHasAKeyInTwoBatches(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store := memory.NewStore(memory.StoreConfig{Lanes: 8})
	pub := &overlapPublisher{inner: memory.NewPublisher(memory.PublisherConfig{}), busy: map[string]bool{}}
	var msgs []outbox.Message
	for i := range 2000 {
		key := fmt.Sprintf("k%d", i%20)
		msgs = append(msgs, outbox.Message{Topic: "t", Key: key, Payload: fmt.Appendf(nil, "%s-%04d", key, i/20)})
	}
	enqueue(t, store, msgs...)
	cfg := fastConfig(t)
	cfg.BatchSize = 10
	cfg.Concurrency = 4
	run(t, store, pub, cfg)
	if err := pub.inner.WaitFor(ctx, len(msgs)); err != nil {
		t.Fatal(err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.bad) > 0 {
		t.Fatalf("keys %v were in two batches in flight at once", pub.bad[:min(len(pub.bad), 10)])
	}
	if pub.seen == 0 {
		t.Fatalf("no two batches were ever in flight together; the test proves nothing with Concurrency 4")
	}
	for key, got := range payloadsByKey(pub.inner.Messages()) {
		if !slices.IsSorted(got) {
			t.Fatalf("key %s arrived out of order: %v", key, got[:min(len(got), 10)])
		}
	}
}

// staleReads returns each read's result a little after taking it, as a
// database does when the reply travels while batches are settled.
type staleReads struct{ outbox.Store }

func (s staleReads) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	recs, err := s.Store.Read(ctx, p)
	time.Sleep(2 * time.Millisecond)
	return recs, err
}

// TestRelayPublishesOnceDespiteStaleReads: a read whose snapshot predates
// the settle of a batch sees the batch's records still pending; the relay
// must not publish them again (no duplicate without a failure).
func TestRelayPublishesOnceDespiteStaleReads(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store := memory.NewStore(memory.StoreConfig{Lanes: 8})
	pub := memory.NewPublisher(memory.PublisherConfig{})
	cfg := fastConfig(t)
	cfg.Concurrency = 4
	cfg.BatchSize = 500 // every read comes back short and the next starts from the head
	run(t, staleReads{store}, pub, cfg)
	// Small transactions while the relay runs: most reads start from the
	// head of the lanes and meet batches in flight.
	n := 0
	for i := range 300 {
		var msgs []outbox.Message
		for j := range 10 {
			msgs = append(msgs, outbox.Message{Topic: "t", Key: fmt.Sprintf("k%d", (i*10+j)%50)})
		}
		enqueue(t, store, msgs...)
		n += len(msgs)
		time.Sleep(200 * time.Microsecond)
	}
	if err := pub.WaitFor(ctx, n); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the outbox to be empty", func() bool {
		st, err := store.Stats(ctx)
		return err == nil && st.Pending == 0
	})
	time.Sleep(50 * time.Millisecond) // let a last read land; nothing is asserted about time
	seen := make(map[string]int)
	for _, m := range pub.Messages() {
		seen[m.ID]++
	}
	if dups := len(pub.Messages()) - len(seen); dups != 0 {
		t.Fatalf("published %d duplicates of %d messages without any failure", dups, n)
	}
}

// TestRelayLateCommitGoesBeforeItsKeysNextRecord: T1 writes k#1 and stays
// open while the relay reads full pages past its sequence number; T1
// commits, and the same writer then writes k#2. k#1 committed first, so it
// must arrive first: a relay that read on from a cursor above the last
// record seen would find k#2 before coming back for k#1.
func TestRelayLateCommitGoesBeforeItsKeysNextRecord(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store := memory.NewStore(memory.StoreConfig{Lanes: 4})
	inner := memory.NewPublisher(memory.PublisherConfig{})
	pub := &slowPublisher{inner: inner, delay: 2 * time.Millisecond}
	var backlog []outbox.Message
	for i := range 200 {
		backlog = append(backlog, outbox.Message{Topic: "t", Key: fmt.Sprintf("other-%d", i%40)})
	}
	enqueue(t, store, backlog...)
	t1 := store.Begin()
	if err := store.Enqueue(ctx, t1, outbox.Message{Topic: "t", Key: "k", Payload: []byte("k-1")}); err != nil {
		t.Fatal(err)
	}
	var more []outbox.Message
	for i := range 400 {
		more = append(more, outbox.Message{Topic: "t", Key: fmt.Sprintf("other-%d", i%40)})
	}
	enqueue(t, store, more...)
	cfg := fastConfig(t)
	cfg.BatchSize = 10
	cfg.Concurrency = 1
	run(t, store, pub, cfg)
	// The relay reads full pages past k#1's sequence number.
	if err := inner.WaitFor(ctx, 250); err != nil {
		t.Fatal(err)
	}
	if err := t1.Commit(); err != nil {
		t.Fatal(err)
	}
	enqueue(t, store, outbox.Message{Topic: "t", Key: "k", Payload: []byte("k-2")})
	if err := inner.WaitFor(ctx, 602); err != nil {
		t.Fatal(err)
	}
	if got := payloadsByKey(inner.Messages())["k"]; strings.Join(got, ",") != "k-1,k-2" {
		t.Fatalf("key k arrived as %v; k-1 committed before k-2 was written, so it must arrive first", got)
	}
}

// slowPublisher publishes after a delay, so that a backlog lasts.
type slowPublisher struct {
	inner *memory.Publisher
	delay time.Duration
}

func (p *slowPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	time.Sleep(p.delay)
	return p.inner.Publish(ctx, msgs)
}
