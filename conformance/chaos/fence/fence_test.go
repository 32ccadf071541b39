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
	recs, err := st.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 10, Lease: time.Minute})
	if err != nil || len(recs) != 1 {
		t.Fatalf("claim through an open fence: %d records, %v", len(recs), err)
	}

	f.Kill()
	if errs := p.Publish(ctx, []outbox.Message{recs[0].Message}); len(errs) != 1 || !errors.Is(errs[0], fence.ErrKilled) {
		t.Fatalf("publish through a killed fence: %v", errs)
	}
	if err := st.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "a", IDs: []string{recs[0].ID}}); !errors.Is(err, fence.ErrKilled) {
		t.Fatalf("mark delivered through a killed fence: %v", err)
	}
	if _, err := st.(outbox.Listener).Listen(ctx); !errors.Is(err, fence.ErrKilled) {
		t.Fatalf("listen through a killed fence: %v", err)
	}
	// Nothing reached the store: the record is still leased to the dead relay.
	if again, err := store.Claim(ctx, outbox.ClaimParams{Owner: "b", Limit: 10, Lease: time.Minute}); err != nil || len(again) != 0 {
		t.Fatalf("the killed relay's lease did not hold: %d records, %v", len(again), err)
	}
}
