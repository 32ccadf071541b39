package outbox_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// stalledSync is a store (with no notifications: polling only) whose
// SyncLanes, once armed, stalls until released and then goes through: the
// relay's lane loop paused past its lease (a frozen goroutine, a reply that
// comes back late), the rest of the relay running on.
type stalledSync struct {
	outbox.Store

	mu      sync.Mutex
	armed   bool
	stalled chan struct{} // closed when an armed call stalls
	release chan struct{}
}

func (s *stalledSync) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	s.mu.Lock()
	armed := s.armed
	s.armed = false
	s.mu.Unlock()
	if armed {
		close(s.stalled)
		<-s.release
		ctx = context.WithoutCancel(ctx)
	}
	return s.Store.SyncLanes(ctx, p)
}

// stallableStore is a memory store of two lanes whose reads can be held
// and whose SyncLanes can stall, with the functions that release them
// (also called at cleanup).
func stallableStore(t *testing.T) (*memory.Store, *heldRead, *stalledSync, func(), func()) {
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	hr := &heldRead{Store: mem, caught: make(chan struct{}), release: make(chan struct{})}
	store := &stalledSync{Store: hr, stalled: make(chan struct{}), release: make(chan struct{})}
	var once1, once2 sync.Once
	releaseRead := func() { once1.Do(func() { close(hr.release) }) }
	releaseSync := func() { once2.Do(func() { close(store.release) }) }
	t.Cleanup(releaseRead)
	t.Cleanup(releaseSync)
	return mem, hr, store, releaseRead, releaseSync
}

// shortLease is the configuration of relay "a" with one worker and a
// lease short enough to run out within a test.
func shortLease(t *testing.T, obs outbox.Observer) outbox.RelayConfig {
	cfg := fastConfig(t)
	cfg.Owner = "a"
	cfg.Lease = 600 * time.Millisecond
	cfg.ReadTimeout = 300 * time.Millisecond
	cfg.Concurrency = 1
	cfg.Observer = obs
	return cfg
}

// stall arms s, waits for the relay's lane loop to stall in it, and then
// for lane (of mem) to expire in the store.
func (s *stalledSync) stall(ctx context.Context, t *testing.T, mem *memory.Store, lane int) {
	t.Helper()
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
	select {
	case <-s.stalled:
	case <-ctx.Done():
		t.Fatal("the relay's lane loop never synced")
	}
	eventually(t, ctx, "the lane to expire", func() bool { return !laneState(ctx, t, mem, lane).Until.After(time.Now()) })
}

// laneLosses counts the lanes a relay found lost.
type laneLosses struct{ lost atomic.Int64 }

func (o *laneLosses) ObserveLanes(e outbox.LaneEvent) { o.lost.Add(int64(e.Lost)) }
func (o *laneLosses) ObserveRead(outbox.ReadEvent)    {}
func (o *laneLosses) ObserveBatch(outbox.BatchEvent)  {}

// laneState is lane id as the store sees it now.
func laneState(ctx context.Context, t *testing.T, mem *memory.Store, id int) outbox.LaneState {
	t.Helper()
	v, err := mem.SyncLanes(ctx, outbox.SyncParams{Owner: "observer", Lease: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	return v.Lanes[id]
}

// keyOnLane returns a key of lane among lanes, other than those in not.
func keyOnLane(lane, lanes int, not ...string) string {
	for i := 0; ; i++ {
		k := string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		if outbox.LaneOf(k, "", lanes) != lane {
			continue
		}
		dup := false
		for _, n := range not {
			dup = dup || n == k
		}
		if !dup {
			return k
		}
	}
}

// TestAttackReaderSleepsThroughLostLane probes at-least-once delivery (no
// committed record stuck while a relay runs) when a lane is lost while the
// relay's queue is full of that lane's records.
//
// Interleaving (relay A, polling only, holds lanes 0 and 1; the test plays
// relay B):
//
//  1. A's read of its lanes takes its snapshot, with y1 and y2 (lane 0)
//     pending; its reply is held.
//  2. A's lane loop stalls in SyncLanes past the lease; lane 0 expires in
//     the store and B takes it.
//  3. A's read comes back: y1 and y2 are queued (lane 0 is still held at
//     the epoch of the read, as far as A knows), which fills the read-ahead
//     (BatchSize 2, Concurrency 1). No worker can take them (A's lease ran
//     out), so the reader sleeps until a worker makes room: up to an hour.
//  4. A's SyncLanes goes through: lane 1 renewed, lane 0 lost, y1 and y2
//     forgotten. The queue is empty, but nothing wakes the reader.
//  5. z is committed on lane 1, which A holds: nothing reads it for an
//     hour (a store with notifications would have woken the reader; one
//     without, or whose notifications are lost, does not).
//
// The lane loop must wake the reader whenever it drops queued records.
func TestAttackReaderSleepsThroughLostLane(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem, hr, store, releaseRead, releaseSync := stallableStore(t)

	pub := memory.NewPublisher(memory.PublisherConfig{})
	obs := &laneLosses{}
	cfg := shortLease(t, obs)
	cfg.BatchSize = 2
	run(t, store, pub, cfg)

	lane := func(id int) outbox.LaneState { return laneState(ctx, t, mem, id) }
	eventually(t, ctx, "A to hold both lanes", func() bool { return lane(0).Owner == "a" && lane(1).Owner == "a" })

	// 1. A read catches y1 and y2 and is held.
	k1 := keyOnLane(0, 2)
	k2 := keyOnLane(0, 2, k1)
	y1 := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: k1, Payload: []byte("y1")}
	y2 := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: k2, Payload: []byte("y2")}
	hr.mu.Lock()
	hr.watch = y1.ID
	hr.mu.Unlock()
	enqueue(t, mem, y1, y2)
	select {
	case <-hr.caught:
	case <-ctx.Done():
		t.Fatal("A never read y1")
	}

	// 2. The lane loop stalls; lane 0 expires and B takes it.
	store.stall(ctx, t, mem, 0)
	if _, err := mem.SyncLanes(ctx, outbox.SyncParams{Owner: "b", Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	taken, err := mem.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: time.Minute, Lanes: []outbox.Lane{lane(0).Lane}})
	if err != nil || len(taken) != 1 {
		t.Fatalf("B takes lane 0: %v, %v", taken, err)
	}

	// 3. A's read comes back, and the reader finds the queue full. (The
	// pause lets it get there before step 4; if it is slower, the test
	// passes without proving anything, never the reverse.)
	releaseRead()
	time.Sleep(100 * time.Millisecond)

	// 4. A's sync goes through and finds lane 0 lost.
	releaseSync()
	eventually(t, ctx, "A to find lane 0 lost", func() bool { return obs.lost.Load() > 0 })
	if l := lane(1); l.Owner != "a" {
		t.Fatalf("lane 1 is held by %q; want A still", l.Owner)
	}

	// 5. z, on lane 1, must be published: A holds lane 1 and polls every
	// 20 ms.
	z := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: keyOnLane(1, 2), Payload: []byte("z")}
	enqueue(t, mem, z)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		published := false
		for _, m := range pub.Messages() {
			published = published || m.ID == z.ID
		}
		if published {
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("BUG (at-least-once): z, committed on lane 1 which A holds, was not published within 15 s " +
				"(PollInterval 20 ms): A's reader sleeps on a full queue that losing lane 0 emptied, and nothing wakes it")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

var errBrokerSaidNo = errors.New("broker said no")

// batchCount counts the batches a relay finished, beside lane losses.
type batchCount struct {
	laneLosses
	batches atomic.Int64
}

func (o *batchCount) ObserveBatch(outbox.BatchEvent) { o.batches.Add(1) }

// TestAttackStaleBatchDuringReadOfNewEpoch probes per-key order when the
// relay loses a lane with a batch in flight and takes it back at once.
//
// Interleaving (relay A holds lanes 0 and 1; the test plays relay B):
//
//  1. A publishes a (key k, lane 1); the broker holds the call.
//  2. A's lane loop stalls past the lease; B takes lane 1 and gives it
//     back. b (key k) is committed.
//  3. A's sync goes through: lane 1 lost; A takes it back (free) at a new
//     epoch and reads it, leaving out a (in flight): the read returns b
//     and its reply is held.
//  4. a fails. Its retry cannot be recorded (the lane changed epoch), so
//     A forgets a, for the next read to find it again.
//  5. The read comes back: b is of lane 1 at the epoch A holds, and not
//     held any more behind a. Queued alone, b was published before a was
//     ever delivered.
func TestAttackStaleBatchDuringReadOfNewEpoch(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem, hr, store, releaseRead, releaseSync := stallableStore(t)
	var once sync.Once
	gate, entered := make(chan struct{}), make(chan struct{})
	openGate := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(openGate)

	key := keyOnLane(1, 2)
	a := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: key, Payload: []byte("a")}
	b := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: key, Payload: []byte("b")}
	inner := memory.NewPublisher(memory.PublisherConfig{})
	var first atomic.Bool
	pub := publishFunc(func(ctx context.Context, msgs []outbox.Message) []error {
		if len(msgs) == 1 && msgs[0].ID == a.ID && first.CompareAndSwap(false, true) {
			close(entered)
			<-gate
			return []error{errBrokerSaidNo}
		}
		return inner.Publish(ctx, msgs)
	})
	obs := &batchCount{}
	cfg := shortLease(t, obs)
	run(t, store, pub, cfg)
	lane := func(id int) outbox.LaneState { return laneState(ctx, t, mem, id) }
	eventually(t, ctx, "A to hold both lanes", func() bool { return lane(0).Owner == "a" && lane(1).Owner == "a" })

	// 1.
	enqueue(t, mem, a)
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("A never published a")
	}

	// 2.
	store.stall(ctx, t, mem, 1)
	taken, err := mem.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: time.Minute, Lanes: []outbox.Lane{lane(1).Lane}})
	if err != nil || len(taken) != 1 {
		t.Fatalf("B takes lane 1: %v, %v", taken, err)
	}
	if err := mem.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "b", Lanes: taken}); err != nil {
		t.Fatal(err)
	}
	hr.mu.Lock()
	hr.watch = b.ID
	hr.mu.Unlock()
	enqueue(t, mem, b)

	// 3.
	releaseSync()
	select {
	case <-hr.caught:
	case <-ctx.Done():
		t.Fatal("A never read b")
	}
	if l := lane(1); l.Owner != "a" || l.Epoch <= taken[0].Epoch {
		t.Fatalf("lane 1 is %+v; want A's, at an epoch after B's %d", l, taken[0].Epoch)
	}

	// 4. (The pause lets the worker record a's outcome in the queue after
	// the batch is observed; if it is slower, the test proves nothing,
	// never the reverse.)
	openGate()
	eventually(t, ctx, "a's batch to finish", func() bool { return obs.batches.Load() > 0 })
	time.Sleep(100 * time.Millisecond)

	// 5.
	releaseRead()
	eventually(t, ctx, "a and b to be published", func() bool { return len(inner.Messages()) >= 2 })
	var order []string
	for _, m := range inner.Messages() {
		if p := string(m.Payload); !slices.Contains(order, p) {
			order = append(order, p)
		}
	}
	if !slices.Equal(order, []string{"a", "b"}) {
		t.Fatalf("BUG (per-key order): first publications of key %s are %v; want [a b] (b was queued from a read "+
			"that left out a, which the relay then forgot)", key, order)
	}
}

// failingTakes is a store whose TakeLanes fails once armed (a take that
// times out charging the attempts of a big lane, say), while the rest works.
type failingTakes struct {
	outbox.Store
	fail atomic.Bool
}

func (s *failingTakes) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if s.fail.Load() {
		return nil, errors.New("take lanes: timeout")
	}
	return s.Store.TakeLanes(ctx, p)
}

// laneErrors counts the lane rounds that failed.
type laneErrors struct {
	batchCount
	errs atomic.Int64
}

func (o *laneErrors) ObserveLanes(e outbox.LaneEvent) {
	if e.Err != nil {
		o.errs.Add(1)
	}
}

// TestAttackFailingTakesKeepHeldLanes probes at-least-once delivery when
// the relay renews its lanes fine but cannot take the one more it wants.
//
// Interleaving: relay A holds lane 0; relay B held lane 1 and died (its
// lease and membership ran out), so A wants lane 1 too. Every TakeLanes
// fails, so every lane round of A ends in an error, though its SyncLanes
// renewed lane 0 each time. After a lease of failed rounds A concluded it
// "could not renew its lanes within the lease" and forgot lane 0: held in
// the store by A, renewed by nobody, published by nobody while the takes
// fail (and charged an attempt when A takes it back, as if A had died).
func TestAttackFailingTakesKeepHeldLanes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	store := &failingTakes{Store: mem}
	holdLanes(ctx, t, mem, "b", 400*time.Millisecond, 1) // B holds lane 1 for a moment
	pub := memory.NewPublisher(memory.PublisherConfig{})
	obs := &laneErrors{}
	run(t, store, pub, shortLease(t, obs))
	eventually(t, ctx, "A to take lane 0", func() bool { return laneState(ctx, t, mem, 0).Owner == "a" })
	store.fail.Store(true)

	// B's lease runs out; A's rounds fail for well over a lease (600 ms).
	eventually(t, ctx, "A's lane rounds to fail for a while", func() bool { return obs.errs.Load() >= 10 })

	z := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: keyOnLane(0, 2), Payload: []byte("z")}
	enqueue(t, mem, z)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pub.WaitFor(wctx, 1); err != nil {
		l := laneState(ctx, t, mem, 0)
		t.Fatalf("BUG (at-least-once): z, on lane 0, not published within 15 s; lane 0 is held by %q until %v "+
			"(A renews it, or did, but forgot it after its takes of lane 1 failed for a lease)", l.Owner, l.Until)
	}
}
