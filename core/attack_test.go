package outbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// heldRead is a store whose Read, once armed, takes its result and then
// holds it until released when the result contains the record watched: a
// read whose snapshot is taken at once and whose reply comes late (a slow
// network, a busy server, a GC pause in the relay while it scans rows).
type heldRead struct {
	outbox.Store

	mu      sync.Mutex
	watch   string
	caught  chan struct{}
	release chan struct{}
}

func (s *heldRead) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	recs, err := s.Store.Read(ctx, p)
	s.mu.Lock()
	hit := false
	if s.watch != "" {
		for _, r := range recs {
			if r.ID == s.watch {
				hit = true
				s.watch = ""
			}
		}
	}
	s.mu.Unlock()
	if hit {
		close(s.caught)
		<-s.release
	}
	return recs, err
}

// TestAttackStaleReadAcrossLaneHandover probes promise 3 (duplicates only
// after a crash, a lost ack or an expired lease) across a graceful
// handover of a lane and back.
//
// Interleaving (relay A runs; the test plays relay B with store calls):
//
//  1. A holds lanes 0 and 1. A's read of lanes 0 and 1 takes its snapshot,
//     with record r1 (lane 1) pending, and its reply is held.
//  2. B joins (SyncLanes). A's lane loop sees two relays, gives lane 1 back
//     (draining, nothing in flight) and releases it.
//  3. B takes lane 1 (free: no charge), reads r1, publishes it and settles
//     it delivered; then B leaves (ReleaseLanes with Leave), gracefully.
//  4. A's lane loop, alone again, takes lane 1 back at a new epoch.
//  5. A's held read returns: r1 pending, of lane 1, which A holds (at
//     another epoch than when the read began, but queue.add checks only
//     that the lane is held and not draining). A queues r1 and publishes
//     it again.
//
// No relay crashed, no ack was lost, no lease expired: the duplicate is
// outside promise 3. On a real server the window is a read that lasts
// longer than one lane round (Lease/3) and less than ReadTimeout (at most
// Lease/2), e.g. 3.4-5 s with the default 10 s lease, during which a relay
// joins and leaves (autoscaling, a rolling deploy). The held read here
// ignores the read's deadline to avoid depending on the lane loop's timer
// phase; the interleaving is the same.
//
// Fix: remember the epoch of each lane read at the start of the read
// (rn.q.readable returns them) and have queue.add drop records of a lane
// whose epoch changed meanwhile (the lane changed hands: its records are
// read again from the head, rescan is set on every take anyway).
func TestAttackStaleReadAcrossLaneHandover(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mem := memory.NewStore(memory.StoreConfig{Lanes: 2})
	store := &heldRead{Store: mem, caught: make(chan struct{}), release: make(chan struct{})}
	defer func() {
		select {
		case <-store.release:
		default:
			close(store.release)
		}
	}()
	pub := memory.NewPublisher(memory.PublisherConfig{})
	cfg := fastConfig(t)
	cfg.Owner = "a"
	cfg.Lease = 600 * time.Millisecond
	cfg.ReadTimeout = 300 * time.Millisecond
	relayA, _ := run(t, store, pub, cfg)

	lane := func(id int) outbox.LaneState {
		v, err := mem.SyncLanes(ctx, outbox.SyncParams{Owner: "observer", Lease: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		return v.Lanes[id]
	}
	eventually(t, ctx, "A to hold both lanes", func() bool { return lane(0).Owner == "a" && lane(1).Owner == "a" })

	key := ""
	for i := 0; key == ""; i++ {
		if k := string(rune('a'+i%26)) + string(rune('a'+i/26)); outbox.LaneOf(k, "", 2) == 1 {
			key = k
		}
	}
	r1 := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: key, Payload: []byte("1")}
	store.mu.Lock()
	store.watch = r1.ID
	store.mu.Unlock()
	enqueue(t, mem, r1)
	relayA.Notify()
	select {
	case <-store.caught:
	case <-ctx.Done():
		t.Fatal("A never read r1")
	}

	// 2. B joins; A gives lane 1 back.
	if _, err := mem.SyncLanes(ctx, outbox.SyncParams{Owner: "b", Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "A to release lane 1", func() bool { return lane(1).Owner == "" })

	// 3. B takes lane 1, publishes r1, settles it, leaves.
	taken, err := mem.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: time.Minute, Lanes: []outbox.Lane{lane(1).Lane}, Charge: 100})
	if err != nil || len(taken) != 1 {
		t.Fatalf("B takes lane 1: %v, %v", taken, err)
	}
	recs, err := mem.Read(ctx, outbox.ReadParams{Lanes: []int{1}, Limit: 10})
	if err != nil || len(recs) != 1 || recs[0].ID != r1.ID {
		t.Fatalf("B reads lane 1: %v, %v", recs, err)
	}
	if errs := pub.Publish(ctx, []outbox.Message{recs[0].Message}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if err := mem.Settle(ctx, outbox.SettleParams{Lanes: taken, Delivered: []string{r1.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := mem.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "b", Lanes: taken, Leave: true}); err != nil {
		t.Fatal(err)
	}

	// 4. A takes lane 1 back.
	eventually(t, ctx, "A to take lane 1 back", func() bool { l := lane(1); return l.Owner == "a" && l.Epoch > taken[0].Epoch })

	// 5. A's read comes back. A sentinel r2 of the same key, written now,
	// is published after anything A queued of that key before it.
	close(store.release)
	r2 := outbox.Message{ID: outbox.NewID(), Topic: "t", Key: key, Payload: []byte("2")}
	enqueue(t, mem, r2)
	relayA.Notify()
	eventually(t, ctx, "r2 to be published", func() bool {
		for _, m := range pub.Messages() {
			if m.ID == r2.ID {
				return true
			}
		}
		return false
	})
	n := 0
	for _, m := range pub.Messages() {
		if m.ID == r1.ID {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("BUG (promise 3): r1 was published %d times; the relay re-queued it from a read whose snapshot predates "+
			"the lane's handover to B and back (no crash, no lost ack, no expired lease)", n)
	}
}
