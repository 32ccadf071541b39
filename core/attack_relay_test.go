package outbox_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// lateSync is a store whose SyncLanes, while failing is set, commits and
// then fails on the relay's side: it waits out the caller's deadline (a
// reply lost, or slower than ReadTimeout) though the server renewed the
// lanes.
type lateSync struct {
	outbox.Store
	failing atomic.Bool
}

func (s *lateSync) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	v, err := s.Store.SyncLanes(ctx, p)
	if err != nil || !s.failing.Load() {
		return v, err
	}
	<-ctx.Done()
	return outbox.LaneView{}, ctx.Err()
}

// chargeSeen records the attempts each record had when a batch took it.
type chargeSeen struct {
	mu       sync.Mutex
	attempts map[string]int
}

func (o *chargeSeen) ObserveLanes(outbox.LaneEvent) {}
func (o *chargeSeen) ObserveRead(outbox.ReadEvent)  {}
func (o *chargeSeen) ObserveBatch(b outbox.BatchEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range b.Records {
		if _, ok := o.attempts[r.ID]; !ok {
			o.attempts[r.ID] = r.Attempts
		}
	}
}

// whenPublished waits for a batch with the record id to be
// observed, and returns the attempts id had when that batch took it.
func (o *chargeSeen) whenPublished(ctx context.Context, t *testing.T, id string) int {
	t.Helper()
	for {
		o.mu.Lock()
		n, ok := o.attempts[id]
		o.mu.Unlock()
		if ok {
			return n
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never published", id)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// holdLanes makes owner a live relay holding lanes (of mem) for lease.
func holdLanes(ctx context.Context, t *testing.T, mem *memory.Store, owner string, lease time.Duration, lanes ...int) {
	t.Helper()
	if _, err := mem.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: lease}); err != nil {
		t.Fatal(err)
	}
	var want []outbox.Lane
	for _, id := range lanes {
		want = append(want, laneState(ctx, t, mem, id).Lane)
	}
	if taken, err := mem.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: lease, Lanes: want}); err != nil || len(taken) != len(lanes) {
		t.Fatalf("%s takes lanes %v: %v, %v", owner, lanes, taken, err)
	}
}

// TestAttackLanesRenewedLateAfterLoseAll probes suspicion 1: lanes
// orphaned after the relay forgot them (loseAll) while the store still
// holds them for it.
//
// Interleaving: relay A holds both lanes. Its SyncLanes calls commit on
// the server but time out on A's side, for more than a lease: A forgets
// every lane (loseAll), though the last late renewal keeps them A's in the
// store for up to another lease. z is committed on lane 0. Then A's syncs
// work again. A holds nothing, and the view shows the lanes held by A:
// neither free nor expired, so A did not take them back until they
// expired, and then took them as a dead relay's lanes, charging z an
// attempt it never had (a record that "crashed" a relay that is alive),
// after up to a lease with nobody publishing the lanes.
func TestAttackLanesRenewedLateAfterLoseAll(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	store := &lateSync{Store: mem}
	logs := &levelLog{}
	obs := &chargeSeen{attempts: make(map[string]int)}
	cfg := shortLease(t, obs)
	cfg.Logger = slog.New(logs)
	pub := memory.NewPublisher(memory.PublisherConfig{})
	run(t, store, pub, cfg)
	eventually(t, ctx, "A to hold both lanes", func() bool {
		return laneState(ctx, t, mem, 0).Owner == "a" && laneState(ctx, t, mem, 1).Owner == "a"
	})

	store.failing.Store(true)
	eventually(t, ctx, "A to forget its lanes", func() bool {
		return logs.find("relay stops publishing until it can renew its lanes") != ""
	})
	z := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: keyOnLane(0, 2), Payload: []byte("z")}
	enqueue(t, mem, z)
	store.failing.Store(false)

	if n := obs.whenPublished(ctx, t, z.ID); n != 0 {
		t.Fatalf("BUG (lanes orphaned): z went out with %d attempts charged; want 0: after forgetting its lanes, "+
			"A left them held in the store by itself until they expired, then took them back as a dead relay's", n)
	}
}

// TestRestartedOwnerStillWaitsForItsOldLanes: releasing the lanes the
// store holds for the relay but the relay does not (see
// TestAttackLanesRenewedLateAfterLoseAll) concerns only the lanes this run
// took. A relay restarted under its former owner (which the configuration
// advises against) must not take that run's lanes back free of charge: the
// run may have died publishing a record that crashes relays.
func TestRestartedOwnerStillWaitsForItsOldLanes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	holdLanes(ctx, t, mem, "a", 300*time.Millisecond, 0, 1) // the former run of "a", which dies
	z := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: keyOnLane(0, 2), Payload: []byte("z")}
	enqueue(t, mem, z)

	obs := &chargeSeen{attempts: make(map[string]int)}
	run(t, mem, memory.NewPublisher(memory.PublisherConfig{}), shortLease(t, obs))
	if n := obs.whenPublished(ctx, t, z.ID); n != 1 {
		t.Fatalf("z went out with %d attempts charged; want 1 (the lanes of a dead run, taken over)", n)
	}
}

// failingSettles is a store whose Settle, for its first calls, waits out
// the caller's deadline and fails; with commit set, the first of them
// records the outcomes first (the commit went through, its reply did not).
type failingSettles struct {
	outbox.Store
	commit bool

	mu    sync.Mutex
	fails int // calls still to fail
	calls int
	done  chan struct{} // closed after the first call that succeeds
}

func (s *failingSettles) Settle(ctx context.Context, p outbox.SettleParams) error {
	s.mu.Lock()
	s.calls++
	first, fail := s.calls == 1, s.fails > 0
	s.fails--
	s.mu.Unlock()
	if !fail {
		err := s.Store.Settle(ctx, p)
		s.mu.Lock()
		if err == nil && s.done != nil {
			close(s.done)
			s.done = nil
		}
		s.mu.Unlock()
		return err
	}
	if first && s.commit {
		if err := s.Store.Settle(ctx, p); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestAttackFailedSettleRepublishes probes suspicion 2: a batch whose
// Settle fails (for longer than PublishTimeout, through the retries of
// settle) went back Released, with no backoff, and was published again at
// once: one more duplicate of every record of the batch per
// PublishTimeout, for as long as the store refused the settles (forever,
// if only Settle fails: the lanes are renewed). The outcomes are known:
// the relay must record them again, not publish again.
func TestAttackFailedSettleRepublishes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	store := &failingSettles{Store: mem, fails: 3, done: make(chan struct{})}
	done := store.done
	pub := memory.NewPublisher(memory.PublisherConfig{})
	obs := &recordingObserver{}
	cfg := fastConfig(t)
	cfg.PublishTimeout = 200 * time.Millisecond
	cfg.Observer = obs
	run(t, store, pub, cfg)

	z := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "k", Payload: []byte("z")}
	enqueue(t, mem, z)
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("z's outcome was never recorded")
	}
	eventually(t, ctx, "z to be delivered", func() bool {
		st, err := mem.Stats(ctx)
		return err == nil && st.Pending == 0
	})
	if n := len(pub.Messages()); n != 1 {
		t.Fatalf("BUG (duplicates): z was published %d times for 3 failed settles; want once "+
			"(its outcome was known: only the settle had to be tried again)", n)
	}
	// The batch is observed once, with its outcome as finally recorded
	// (metrics and the dead-letter log follow it).
	eventually(t, ctx, "z's batch to be observed", func() bool { _, ok := obs.outcomeOf(z.ID); return ok })
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if b := obs.batches; len(b) != 1 || b[0].SettleErr != nil || b[0].Outcomes[0].Status != outbox.Delivered {
		t.Fatalf("observed %d batches, the first %+v; want one, delivered and settled", len(b), b[0])
	}
}

// TestAttackStrictOrderSettleCommittedButFailed probes suspicion 3: with
// StrictOrder, a Settle that dead-letters a (key k) commits but fails on
// the relay's side. The relay put a and b (k's next record, released
// behind a) back and published them again: a went out a second time (the
// broker took it now), and b after it, while a is a dead letter that
// nobody replayed; replaying it later puts a after b.
func TestAttackStrictOrderSettleCommittedButFailed(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	store := &failingSettles{Store: mem, commit: true, fails: 1, done: make(chan struct{})}
	done := store.done
	a := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "k", Payload: []byte("a")}
	b := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "k", Payload: []byte("b")}
	enqueue(t, mem, a, b)
	inner := memory.NewPublisher(memory.PublisherConfig{})
	var rejected atomic.Bool
	pub := publishFunc(func(ctx context.Context, msgs []outbox.Message) []error {
		if msgs[0].ID == a.ID && rejected.CompareAndSwap(false, true) {
			errs := make([]error, len(msgs))
			errs[0] = outbox.Permanent(errBrokerSaidNo)
			for i := 1; i < len(msgs); i++ {
				errs[i] = outbox.ErrNotAttempted
			}
			return errs
		}
		return inner.Publish(ctx, msgs)
	})
	cfg := fastConfig(t)
	cfg.PublishTimeout = 200 * time.Millisecond
	cfg.StrictOrder = true
	run(t, store, pub, cfg)

	select {
	case <-done: // a settle after the one that failed went through
	case <-ctx.Done():
		t.Fatal("no settle went through")
	}
	for _, m := range inner.Messages() {
		if m.ID == b.ID {
			t.Fatalf("BUG (strict order): b was published while a, before it in key k, is a dead letter not replayed "+
				"(published: %v)", payloads(inner.Messages()))
		}
	}
	if n, err := mem.ReplayDead(ctx, outbox.SelectDead{All: true}); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v; want a replayed", n, err)
	}
	eventually(t, ctx, "a and b to be published", func() bool { return len(inner.Messages()) >= 2 })
	if got := payloads(inner.Messages()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("publications %v; want [a b]", got)
	}
}

func payloads(msgs []outbox.Message) []string {
	var p []string
	for _, m := range msgs {
		p = append(p, string(m.Payload))
	}
	return p
}

// TestAttackFailingTakesDoNotPauseReads probes suspicion 4: a lane round
// whose SyncLanes renewed the lanes but whose TakeLanes failed tripped the
// store breaker, which pauses the reads of the lanes the relay holds (and
// renews fine) for a failure that concerns only lanes it does not hold.
func TestAttackFailingTakesDoNotPauseReads(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	store := &failingTakes{Store: mem}
	holdLanes(ctx, t, mem, "b", 400*time.Millisecond, 1) // once its lease runs out, A wants lane 1
	logs := &levelLog{}
	obs := &laneErrors{}
	cfg := shortLease(t, obs)
	cfg.Logger = slog.New(logs)
	run(t, store, memory.NewPublisher(memory.PublisherConfig{}), cfg)
	eventually(t, ctx, "A to take lane 0", func() bool { return laneState(ctx, t, mem, 0).Owner == "a" })
	store.fail.Store(true)

	// The breaker trips after the round's event is observed: two failed
	// rounds mean the first one's failure was counted.
	eventually(t, ctx, "two failed lane rounds", func() bool { return obs.errs.Load() >= 2 })
	if line := logs.find("pausing the relay"); line != "" {
		t.Fatalf("BUG (needless pause): failing takes paused the reads of the lanes A holds: %q", line)
	}
}

// heldKeyPublisher holds the first batch of key until the gate opens.
type heldKeyPublisher struct {
	inner   *memory.Publisher
	key     string
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

func (p *heldKeyPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if msgs[0].Key == p.key {
		held := false
		p.once.Do(func() { held = true })
		if held {
			close(p.entered)
			<-p.gate
		}
	}
	return p.inner.Publish(ctx, msgs)
}

// keyReads counts the distinct records of one key that reads returned.
type keyReads struct {
	outbox.Store
	key   string
	mu    sync.Mutex
	seen  map[string]bool
	reads int
}

func (s *keyReads) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	recs, err := s.Store.Read(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	for _, r := range recs {
		if r.Key == s.key {
			s.seen[r.ID] = true
		}
	}
	return recs, err
}

func (s *keyReads) counts() (reads, seen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, len(s.seen)
}

// TestAttackBusyKeyDoesNotFillReadAhead probes suspicion 5: the records
// queued behind a key's batch in flight counted as ready, so a key with a
// slow batch and a backlog filled the read-ahead (BatchSize records with
// the default Concurrency 2) and the reader read nothing else: another
// key's record, with a worker free, waited for the slow batch. Nor may the
// reader, to look past the busy key, read its whole backlog into memory.
func TestAttackBusyKeyDoesNotFillReadAhead(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	store := &keyReads{Store: mem, key: "h", seen: make(map[string]bool)}
	var hs []outbox.Message
	for range 20 {
		hs = append(hs, outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "h", Payload: []byte("h")})
	}
	enqueue(t, mem, hs...)
	pub := &heldKeyPublisher{inner: memory.NewPublisher(memory.PublisherConfig{}), key: "h",
		entered: make(chan struct{}), gate: make(chan struct{})}
	var once sync.Once
	openGate := func() { once.Do(func() { close(pub.gate) }) }
	defer openGate() // before the relay stops (Cleanup), which waits for the batch
	cfg := fastConfig(t)
	cfg.BatchSize = 2
	cfg.Concurrency = 2
	run(t, store, pub, cfg)
	select {
	case <-pub.entered:
	case <-ctx.Done():
		t.Fatal("h's first batch was never published")
	}

	o := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "o", Payload: []byte("o")}
	enqueue(t, mem, o)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pub.inner.WaitFor(wctx, 1); err != nil {
		t.Fatalf("BUG (head-of-line): o, of another key, not published within 15 s (PollInterval 20 ms) "+
			"while a worker was free: h's records queued behind its batch in flight filled the read-ahead: %v", err)
	}
	// A few more reads, with h's batch still in flight, must not read h's
	// backlog: its first batch, and at most one read-ahead behind it.
	reads, _ := store.counts()
	eventually(t, ctx, "three more reads", func() bool { r, _ := store.counts(); return r >= reads+3 })
	if _, seen := store.counts(); seen > 2*cfg.BatchSize {
		t.Fatalf("BUG (memory): reads returned %d of h's records while h had a batch in flight; want at most %d",
			seen, 2*cfg.BatchSize)
	}
	openGate()
	eventually(t, ctx, "everything to be published", func() bool { return len(pub.inner.Messages()) == len(hs)+1 })
	var order []string
	for _, m := range pub.inner.Messages() {
		if m.Key == "h" {
			order = append(order, m.ID)
		}
	}
	var want []string
	for _, m := range hs {
		want = append(want, m.ID)
	}
	if !slices.Equal(order, want) {
		t.Fatal("h's records were published out of order")
	}
}
