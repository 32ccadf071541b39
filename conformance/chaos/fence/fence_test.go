package fence_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance/chaos/fence"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

func TestKillCutsTheRelayOff(t *testing.T) {
	ctx := context.Background()
	store := memory.NewStore(memory.StoreConfig{})
	pub := memory.NewPublisher(memory.PublisherConfig{})
	tx := store.Begin()
	if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	f := new(fence.Fence)
	st, p := f.Store(store), f.Publisher(pub)
	if _, ok := st.(outbox.Listener); !ok {
		t.Fatal("the fenced memory store lost its Listener")
	}
	view, err := st.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var all []outbox.Lane
	var ids []int
	for _, l := range view.Lanes {
		all = append(all, l.Lane)
		ids = append(ids, l.ID)
	}
	lanes, err := st.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Minute, Lanes: all})
	if err != nil || len(lanes) != len(all) {
		t.Fatalf("take lanes through an open fence: %d of %d, %v", len(lanes), len(all), err)
	}
	recs, err := st.Read(ctx, outbox.ReadParams{Lanes: ids, Limit: 10})
	if err != nil || len(recs) != 1 {
		t.Fatalf("read through an open fence: %d records, %v", len(recs), err)
	}

	f.Kill()
	if errs := p.Publish(ctx, []outbox.Message{recs[0].Message}); len(errs) != 1 || !errors.Is(errs[0], fence.ErrKilled) {
		t.Fatalf("publish through a killed fence: %v", errs)
	}
	if err := st.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[0].ID}}); !errors.Is(err, fence.ErrKilled) {
		t.Fatalf("settle through a killed fence: %v", err)
	}
	if err := st.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "a", Lanes: lanes, Leave: true}); !errors.Is(err, fence.ErrKilled) {
		t.Fatalf("release lanes through a killed fence: %v", err)
	}
	if _, err := st.(outbox.Listener).Listen(ctx); !errors.Is(err, fence.ErrKilled) {
		t.Fatalf("listen through a killed fence: %v", err)
	}
	// Nothing reached the store: the record is pending and its lane still
	// leased to the dead relay.
	if again, err := store.Read(ctx, outbox.ReadParams{Lanes: ids, Limit: 10}); err != nil || len(again) != 1 {
		t.Fatalf("after the kill the record is not pending: %d records, %v", len(again), err)
	}
	if taken, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: time.Minute, Lanes: lanes}); err != nil || len(taken) != 0 {
		t.Fatalf("the killed relay's lanes did not hold: b took %d, %v", len(taken), err)
	}
}
