package conformance

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// relayHandover runs writers for the whole test while relays come and go on
// one outbox: a relay starts alone, two join (it gives lanes back to them),
// one stops gracefully, one crashes (its lanes wait for their lease to
// expire), and one is paused past its lease and then resumes (a zombie,
// whose late settles must change nothing). Nothing may be lost, and the
// first deliveries of each key must keep commit order; duplicates are
// allowed.
func relayHandover(t *testing.T, h RelayHarness) {
	ctx := testContext(t)
	ob := h.Store.New(t, OutboxOptions{Lanes: 16})
	b := h.Broker.New(t)
	topic := b.Topic(t)
	ledger := NewLedger()
	ConsumeInto(t, ctx, b, ledger, topic)

	wctx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	var written atomic.Int64
	// About 600 messages a second in all (fewer on a slow server, Scale
	// below 1): enough that lanes change hands mid-batch, not so many that
	// the backlog outgrows the lease.
	pause := time.Duration(float64(20*time.Millisecond) / max(h.Store.Scale, 0.05))
	if h.Store.Scale <= 0 {
		pause = 20 * time.Millisecond
	}
	for w := range 3 {
		writers.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				var msgs []outbox.Message
				for j := range 4 {
					// Each key has one writer, so that the ledger's commit
					// order of a key is its true commit order.
					msgs = append(msgs, outbox.Message{Topic: topic, Key: fmt.Sprintf("w%d-k%d", w, (i*4+j)%13),
						Payload: fmt.Appendf(nil, "w%d-%d-%d", w, i, j)})
				}
				if err := tryWrite(ctx, ob, msgs...); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				ledger.Committed(msgs...)
				written.Add(int64(len(msgs)))
				time.Sleep(pause) // a steady load that slow servers keep up with
			}
		})
	}
	progress := func(what string) {
		t.Helper()
		want := ledger.Report().Delivered + 40
		eventually(t, ctx, what, func() bool { return ledger.Report().Delivered >= want })
	}

	cfg := func(owner string) outbox.RelayConfig {
		c := TestRelayConfig(t)
		c.Owner = owner
		c.Lease = 1500 * time.Millisecond
		c.BatchSize = 10
		return c
	}
	stopA := StartRelay(t, ob.Store, b.Publisher, cfg("a"))
	progress("relay a to deliver")

	crashStore := &gatedStore{Store: ob.Store}
	crashPub := &gatedPublisher{Publisher: b.Publisher}
	stopB := StartRelay(t, crashStore, crashPub, cfg("b"))
	zombieStore := &gatedStore{Store: ob.Store}
	zombiePub := &gatedPublisher{Publisher: b.Publisher}
	StartRelay(t, zombieStore, zombiePub, cfg("zombie"))
	t.Cleanup(zombieStore.resume) // before the relay is stopped, should the test end early
	t.Cleanup(zombiePub.resume)
	progress("three relays to deliver")

	stopA() // graceful: its lanes are released at once
	progress("the relays left after a stopped")

	// b crashes: its store and broker calls fail from now on, so it can
	// neither settle nor give its lanes back.
	crashStore.fail.Store(true)
	crashPub.fail.Store(true)
	stopB()
	// The zombie freezes, holding whatever it read and published, for
	// longer than its lease.
	zombieStore.pause()
	zombiePub.pause()
	StartRelay(t, ob.Store, b.Publisher, cfg("c"))
	progress("relay c to take over the crashed and frozen relays' lanes")
	time.Sleep(2 * cfg("c").Lease) // the zombie sleeps past its lease; nothing is asserted about time
	zombieStore.resume()
	zombiePub.resume()
	progress("the relays after the zombie woke up")
	StartRelay(t, ob.Store, b.Publisher, cfg("d"))
	progress("relay d to join")

	stopWriters()
	writers.Wait()
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	rep := ledger.Report()
	if !rep.Clean() {
		t.Fatalf("ledger after relays joined, left, crashed and froze: %s", rep)
	}
	t.Logf("%d written: %s", written.Load(), rep)
}

// gatedStore passes calls to Store until it is paused (calls wait until
// resumed) or failed (calls return ErrUnavailable).
type gatedStore struct {
	outbox.Store
	gate
}

func (g *gatedStore) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	if err := g.enter(ctx); err != nil {
		return outbox.LaneView{}, err
	}
	return g.Store.SyncLanes(ctx, p)
}

func (g *gatedStore) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if err := g.enter(ctx); err != nil {
		return nil, err
	}
	return g.Store.TakeLanes(ctx, p)
}

func (g *gatedStore) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	if err := g.enter(ctx); err != nil {
		return err
	}
	return g.Store.ReleaseLanes(ctx, p)
}

func (g *gatedStore) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if err := g.enter(ctx); err != nil {
		return nil, err
	}
	return g.Store.Read(ctx, p)
}

func (g *gatedStore) Settle(ctx context.Context, p outbox.SettleParams) error {
	if err := g.enter(ctx); err != nil {
		return err
	}
	return g.Store.Settle(ctx, p)
}

// TailLog gives the store's log (when it is a [outbox.LogTailer]) through
// the gate, and so do the calls of the stream it returns.
func (g *gatedStore) TailLog(ctx context.Context, p outbox.TailParams) (outbox.LogStream, error) {
	t, ok := g.Store.(outbox.LogTailer)
	if !ok {
		return nil, outbox.ErrUnsupported
	}
	if err := g.enter(ctx); err != nil {
		return nil, err
	}
	s, err := t.TailLog(ctx, p)
	if err != nil {
		return nil, err
	}
	return &gatedStream{LogStream: s, gate: &g.gate}, nil
}

// gatedStream is a log stream behind a gate. A paused gate stops its
// renewals too, as a frozen process would.
type gatedStream struct {
	outbox.LogStream
	gate *gate
}

func (g *gatedStream) Next(ctx context.Context, max int) ([]outbox.LogRecord, error) {
	if err := g.gate.enter(ctx); err != nil {
		return nil, err
	}
	return g.LogStream.Next(ctx, max)
}

func (g *gatedStream) Park(ctx context.Context, recs []outbox.Parked) error {
	if err := g.gate.enter(ctx); err != nil {
		return err
	}
	return g.LogStream.Park(ctx, recs)
}

func (g *gatedStream) ParkedKeys(ctx context.Context, strict bool) ([]string, error) {
	if err := g.gate.enter(ctx); err != nil {
		return nil, err
	}
	return g.LogStream.ParkedKeys(ctx, strict)
}

func (g *gatedStream) Ack(pos uint64) {
	if g.gate.enter(context.Background()) == nil {
		g.LogStream.Ack(pos)
	}
}

func (g *gatedStream) Renew() {
	if g.gate.enter(context.Background()) == nil {
		g.LogStream.Renew()
	}
}

// gatedPublisher is the same for a publisher.
type gatedPublisher struct {
	outbox.Publisher
	gate
}

func (g *gatedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if err := g.enter(context.WithoutCancel(ctx)); err != nil {
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return g.Publisher.Publish(ctx, msgs)
}

// gate pauses or fails the calls of a wrapper.
type gate struct {
	fail   atomic.Bool
	mu     sync.Mutex
	paused chan struct{} // closed on resume; nil when running
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused == nil {
		g.paused = make(chan struct{})
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused != nil {
		close(g.paused)
		g.paused = nil
	}
}

// enter waits while the gate is paused, ignoring ctx like a frozen process
// would, and fails when the gate fails.
func (g *gate) enter(ctx context.Context) error {
	g.mu.Lock()
	wait := g.paused
	g.mu.Unlock()
	if wait != nil {
		<-wait
	}
	if g.fail.Load() {
		return fmt.Errorf("%w: the relay crashed (test)", outbox.ErrUnavailable)
	}
	return ctx.Err()
}
