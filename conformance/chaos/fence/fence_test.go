package fence_test

import (
	"context"
	"errors"
	"slices"
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

// tailingStore is the memory store with a log whose stream records what
// reaches it.
type tailingStore struct {
	*memory.Store
	stream *recordingStream
}

func (s *tailingStore) TailLog(context.Context, outbox.TailParams) (outbox.LogStream, error) {
	return s.stream, nil
}

type recordingStream struct {
	calls []string
}

func (s *recordingStream) Next(context.Context, int) ([]outbox.LogRecord, error) {
	s.calls = append(s.calls, "Next")
	return nil, nil
}
func (s *recordingStream) Ack(uint64) { s.calls = append(s.calls, "Ack") }
func (s *recordingStream) Park(context.Context, []outbox.Parked) error {
	s.calls = append(s.calls, "Park")
	return nil
}
func (s *recordingStream) ParkedKeys(context.Context, bool) ([]string, error) {
	s.calls = append(s.calls, "ParkedKeys")
	return nil, nil
}
func (s *recordingStream) Renew()       { s.calls = append(s.calls, "Renew") }
func (s *recordingStream) Close() error { s.calls = append(s.calls, "Close"); return nil }

// TestFenceKeepsTheLog: the fenced store tails the log of a store that has
// one (without it the relay would silently poll) and says ErrUnsupported
// for one that has none; once killed, the stream's calls fail or do
// nothing (no Ack, no Renew: the hold lapses as a dead process's), except
// Close.
func TestFenceKeepsTheLog(t *testing.T) {
	ctx := context.Background()
	f := new(fence.Fence)
	if _, err := f.Store(memory.NewStore(memory.StoreConfig{})).(outbox.LogTailer).TailLog(ctx, outbox.TailParams{}); !errors.Is(err, outbox.ErrUnsupported) {
		t.Fatalf("TailLog of a fenced store without a log: %v; want ErrUnsupported", err)
	}
	rec := &recordingStream{}
	st, ok := f.Store(&tailingStore{Store: memory.NewStore(memory.StoreConfig{}), stream: rec}).(outbox.LogTailer)
	if !ok {
		t.Fatal("the fenced store is not an outbox.LogTailer")
	}
	ls, err := st.TailLog(ctx, outbox.TailParams{Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	use := func() (errs []error) {
		_, err := ls.Next(ctx, 1)
		errs = append(errs, err)
		ls.Ack(1)
		errs = append(errs, ls.Park(ctx, nil))
		_, err = ls.ParkedKeys(ctx, false)
		errs = append(errs, err)
		ls.Renew()
		return errs
	}
	for _, err := range use() {
		if err != nil {
			t.Fatalf("a call through an open fence failed: %v", err)
		}
	}
	want := []string{"Next", "Ack", "Park", "ParkedKeys", "Renew"}
	if !slices.Equal(rec.calls, want) {
		t.Fatalf("through an open fence the stream got %v; want %v", rec.calls, want)
	}
	rec.calls = nil
	f.Kill()
	for _, err := range use() {
		if !errors.Is(err, fence.ErrKilled) {
			t.Errorf("a call through a killed fence: %v; want ErrKilled", err)
		}
	}
	if _, err := st.TailLog(ctx, outbox.TailParams{Owner: "a"}); !errors.Is(err, fence.ErrKilled) {
		t.Errorf("TailLog through a killed fence: %v; want ErrKilled", err)
	}
	if err := ls.Close(); err != nil || !slices.Equal(rec.calls, []string{"Close"}) {
		t.Errorf("through a killed fence the stream got %v (Close: %v); want Close only", rec.calls, err)
	}
}
