package sqlitestore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// takeAll makes owner a live relay and takes every lane that is free or
// expired; it returns the lanes taken.
func takeAll(t testing.TB, ctx context.Context, store *sqlitestore.Store, owner string, lease time.Duration) []outbox.Lane {
	t.Helper()
	view, err := store.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]outbox.Lane, len(view.Lanes))
	for i, l := range view.Lanes {
		want[i] = l.Lane
	}
	taken, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: lease, Lanes: want, Charge: 10})
	if err != nil {
		t.Fatal(err)
	}
	return taken
}

func laneIDs(lanes []outbox.Lane) []int {
	ids := make([]int, len(lanes))
	for i, l := range lanes {
		ids[i] = l.ID
	}
	return ids
}

// readLanes reads up to limit pending records of lanes from the oldest.
func readLanes(t testing.TB, ctx context.Context, store *sqlitestore.Store, lanes []outbox.Lane, limit int) []outbox.Record {
	t.Helper()
	recs, err := store.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// deliver settles recs as delivered at the epochs of lanes.
func deliver(t testing.TB, ctx context.Context, store *sqlitestore.Store, lanes []outbox.Lane, recs []outbox.Record) {
	t.Helper()
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: ids(recs)}); err != nil {
		t.Fatal(err)
	}
}

func ids(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// hour is a lease that outlives any test.
const hour = time.Hour

// The first Migrate fixes the lane count; later Migrates, and stores
// configured with another count, keep it; Enqueue puts each record in the
// lane of its key among the table's lanes.
func TestLaneCountIsFixedByTheFirstMigrate(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	db := openDB(t, path)
	first := newStore(t, db, sqlitestore.Config{Lanes: 8})
	second := newStore(t, openDB(t, path), sqlitestore.Config{Lanes: 32}) // migrates again
	held := takeAll(t, ctx, first, "a", hour)
	for _, store := range []*sqlitestore.Store{first, second} {
		view, err := store.SyncLanes(ctx, outbox.SyncParams{Owner: "b", Lease: hour})
		if err != nil {
			t.Fatal(err)
		}
		if len(view.Lanes) != 8 {
			t.Fatalf("%d lanes, want the 8 of the first Migrate", len(view.Lanes))
		}
		for i, l := range view.Lanes {
			if l.ID != i || l.Epoch != 1 || l.Owner != "a" || !l.Until.After(view.Now) {
				t.Fatalf("lane %d is %+v, want held by a at epoch 1", i, l)
			}
		}
		msgs := []outbox.Message{{Topic: "t", Key: "user-1"}, {Topic: "t", Key: "user-2"}, {Topic: "t"}}
		enqueue(t, ctx, db, store, msgs...)
		got := readLanes(t, ctx, store, held, 100)
		byID := make(map[string]outbox.Record)
		for _, r := range got {
			byID[r.ID] = r
		}
		for _, m := range msgs {
			if r, ok := byID[m.ID]; !ok || r.Lane != outbox.LaneOf(m.Key, m.ID, 8) {
				t.Fatalf("record %s (key %q) is in lane %d, want %d", m.ID, m.Key, r.Lane, outbox.LaneOf(m.Key, m.ID, 8))
			}
		}
		deliver(t, ctx, store, held, got)
	}
	if st, err := first.Stats(ctx); err != nil || st.Lanes != 8 || st.Pending != 0 {
		t.Fatalf("Stats = %+v, %v; want 8 lanes, nothing pending", st, err)
	}
}

func TestNewRejectsBadLaneCounts(t *testing.T) {
	t.Parallel()
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	for _, n := range []int{-1, outbox.MaxLanes + 1} {
		if _, err := sqlitestore.New(db, sqlitestore.Config{Lanes: n}); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("New with %d lanes returned %v, want ErrInvalidConfig", n, err)
		}
	}
	for _, n := range []int{1, outbox.MaxLanes} {
		if _, err := sqlitestore.New(db, sqlitestore.Config{Lanes: n}); err != nil {
			t.Errorf("New with %d lanes: %v", n, err)
		}
	}
}

// An outbox table created without its lanes (by hand, or a Migrate cut
// short by a crash: it runs in one transaction, so only by hand) makes
// Enqueue fail with ErrSchemaMissing and say what to run.
func TestEnqueueWithoutLanesTable(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{})
	if _, err := db.ExecContext(ctx, `DROP TABLE outbox_lanes`); err != nil {
		t.Fatal(err)
	}
	fresh, err := sqlitestore.New(db, sqlitestore.Config{}) // reads the lane count anew
	if err != nil {
		t.Fatal(err)
	}
	err = tryEnqueue(ctx, db, fresh, outbox.Message{Topic: "t"})
	if !errors.Is(err, outbox.ErrSchemaMissing) || !strings.Contains(err.Error(), "Migrate") {
		t.Fatalf("Enqueue without the lanes table returned %v, want ErrSchemaMissing saying to run Migrate", err)
	}
	_ = store
}

// A relay whose lanes were taken over settles nothing: its outcomes name
// an epoch the lanes no longer have. The new holder's outcomes apply, each
// kind in its own way, and TakeLanes charged the first records of the
// lanes it took from the expired owner.
func TestSettleIsFencedByEpoch(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{Lanes: 4})
	msgs := make([]outbox.Message, 6)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "t", Key: fmt.Sprint("k", i)}
	}
	enqueue(t, ctx, db, store, msgs...)

	old := takeAll(t, ctx, store, "a", 50*time.Millisecond)
	if len(old) != 4 {
		t.Fatalf("a took %v, want the 4 lanes", old)
	}
	time.Sleep(100 * time.Millisecond) // a's leases expire
	view, err := store.SyncLanes(ctx, outbox.SyncParams{Owner: "b", Lease: hour})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]outbox.Lane, len(view.Lanes))
	for i, l := range view.Lanes {
		want[i] = l.Lane
	}
	lanes, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: hour, Lanes: want, Charge: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(lanes) != 4 || lanes[0].Epoch != 2 {
		t.Fatalf("b took %v, want the 4 lanes at epoch 2", lanes)
	}
	if again, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: "c", Lease: hour, Lanes: want}); err != nil || len(again) != 0 {
		t.Fatalf("TakeLanes at the old epochs = %v, %v; want nothing", again, err)
	}
	recs := readLanes(t, ctx, store, lanes, 100)
	if len(recs) != len(msgs) {
		t.Fatalf("read %d records, want %d", len(recs), len(msgs))
	}
	for i, r := range recs {
		if wantAttempts := min(1, max(0, 2-i)); r.Attempts != wantAttempts {
			t.Fatalf("record %d has %d attempts after the takeover; want %d (the first 2 are charged)", i, r.Attempts, wantAttempts)
		}
	}

	outcomes := func(lanes []outbox.Lane) outbox.SettleParams {
		return outbox.SettleParams{
			Lanes:     lanes,
			Delivered: []string{recs[2].ID},
			Retries:   []outbox.Retry{{ID: recs[3].ID, Error: "later", Delay: time.Minute}},
			Dead:      []outbox.Failure{{ID: recs[4].ID, Error: "never"}},
		}
	}
	if err := store.Settle(ctx, outcomes(old)); err != nil {
		t.Fatal(err)
	}
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: old, Delivered: []string{recs[5].ID}}); err != nil {
		t.Fatal(err)
	}
	if after := readLanes(t, ctx, store, lanes, 100); len(after) != len(recs) || after[3].Attempts != 0 || after[3].LastError != "" {
		t.Fatalf("the outcomes of a stale epoch changed records: %+v", after)
	}

	before := time.Now()
	if err := store.Settle(ctx, outcomes(lanes)); err != nil {
		t.Fatal(err)
	}
	after := readLanes(t, ctx, store, lanes, 100)
	if len(after) != 4 || after[2].ID != recs[3].ID {
		t.Fatalf("after Settle read %v; want the delivered and the dead record gone", ids(after))
	}
	retry := after[2]
	if retry.Attempts != 1 || retry.LastError != "later" || retry.NotBefore.Before(before.Add(time.Minute)) || retry.NotBefore.After(time.Now().Add(time.Minute)) {
		t.Fatalf("retried record: %+v; want 1 attempt, its error and NotBefore a minute from the Settle", retry)
	}
	dead, err := store.ListDead(ctx, outbox.ListDeadParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != recs[4].ID || dead[0].Attempts != 1 || dead[0].LastError != "never" || dead[0].Lane != recs[4].Lane {
		t.Fatalf("dead letters: %+v; want record 4 with 1 attempt and its error", dead)
	}
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 4 || st.Retrying != 3 || st.Dead != 1 || st.Lanes != 4 || len(st.Relays) != 1 || st.Relays[0].Owner != "b" || st.Relays[0].Lanes != 4 {
		t.Fatalf("Stats = %+v; want 4 pending (3 with attempts), 1 dead, b holding the 4 lanes", st)
	}
	if err := store.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "b", Lanes: lanes, Leave: true}); err != nil {
		t.Fatal(err)
	}
	if st, err := store.Stats(ctx); err != nil || len(st.Relays) != 0 || len(st.Lagging) == 0 || st.Lagging[0].Owner != "" {
		t.Fatalf("Stats after b left = %+v, %v; want no relays and free lanes", st, err)
	}
}

// Stores on separate handles of one file take the same lanes at the same
// epochs at once: each lane goes to exactly one of them.
func TestTakeLanesOnSeparateHandles(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	a := newStore(t, openDB(t, path), sqlitestore.Config{Lanes: 64})
	b := newStore(t, openDB(t, path), sqlitestore.Config{})
	view, err := a.SyncLanes(ctx, outbox.SyncParams{Owner: "x", Lease: hour})
	if err != nil {
		t.Fatal(err)
	}
	lanes := make([]outbox.Lane, len(view.Lanes))
	for i, l := range view.Lanes {
		lanes[i] = l.Lane
	}
	var mu sync.Mutex
	owner := make(map[int]string)
	var wg sync.WaitGroup
	for i, store := range []*sqlitestore.Store{a, b, a, b} {
		name := fmt.Sprint("relay-", i)
		wg.Go(func() {
			taken, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: name, Lease: hour, Lanes: lanes})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, l := range taken {
				if prev, ok := owner[l.ID]; ok {
					t.Errorf("lane %d was taken by %s and %s", l.ID, prev, name)
				}
				owner[l.ID] = name
			}
		})
	}
	wg.Wait()
	if len(owner) != len(lanes) {
		t.Fatalf("%d of %d lanes were taken", len(owner), len(lanes))
	}
}

// A takeover charges only records that are due: one waiting out a retry
// delay (not_before in the future) was not in flight, so it is neither
// charged nor counted among the first p.Charge; one whose delay has passed
// is charged.
func TestTakeoverChargesOnlyDueRecords(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{Lanes: 4})
	msgs := make([]outbox.Message, 4)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "t", Key: fmt.Sprint("k", i)}
	}
	enqueue(t, ctx, db, store, msgs...)
	old := takeAll(t, ctx, store, "a", 50*time.Millisecond)
	recs := readLanes(t, ctx, store, old, 100)
	if len(recs) != len(msgs) {
		t.Fatalf("read %d records, want %d", len(recs), len(msgs))
	}
	// The first record waits an hour; the second's delay has passed.
	now := time.Now().UnixMicro()
	for id, notBefore := range map[string]int64{recs[0].ID: now + time.Hour.Microseconds(), recs[1].ID: now - time.Second.Microseconds()} {
		if _, err := db.ExecContext(ctx, "UPDATE "+store.Table()+" SET not_before = ? WHERE id = ?", notBefore, id); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // a's leases expire
	want := make([]outbox.Lane, len(old))
	for i, l := range old {
		want[i] = outbox.Lane{ID: l.ID, Epoch: l.Epoch}
	}
	taken, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: hour, Lanes: want, Charge: 2})
	if err != nil || len(taken) != 4 {
		t.Fatalf("b took %v, %v; want the 4 lanes", taken, err)
	}
	after := readLanes(t, ctx, store, taken, 100)
	for i, r := range after {
		wantAttempts := 0
		if i == 1 || i == 2 {
			wantAttempts = 1 // the first 2 due records
		}
		if r.ID != recs[i].ID || r.Attempts != wantAttempts {
			t.Fatalf("record %d (%s) has %d attempts after the takeover; want %d (the waiting record 0 is skipped, records 1 and 2 charged)", i, r.ID, r.Attempts, wantAttempts)
		}
	}
}

// TestSettleDeletesUnlessRetained: a delivered settle deletes its records
// (in the transaction of the failures beside it); with Retain it marks them
// delivered, for Cleanup to delete.
func TestSettleDeletesUnlessRetained(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{Lanes: 4})
	msgs := make([]outbox.Message, 4)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "t", Key: "k"}
	}
	enqueue(t, ctx, db, store, msgs...)
	lanes := takeAll(t, ctx, store, "a", hour)
	recs := readLanes(t, ctx, store, lanes, 10)
	count := func(where string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+store.Table()+" WHERE "+where, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[1].ID},
		Retries: []outbox.Retry{{ID: recs[3].ID, Error: "boom"}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[2].ID}, Retain: true}); err != nil {
		t.Fatal(err)
	}
	if n := count("id IN (?, ?)", recs[0].ID, recs[1].ID); n != 0 {
		t.Errorf("%d records delivered without Retain are still in the table; want none", n)
	}
	if n := count("id = ? AND delivered_at IS NOT NULL", recs[2].ID); n != 1 {
		t.Errorf("the record delivered with Retain is not kept as delivered")
	}
	if n := count("id = ? AND delivered_at IS NULL AND attempts = 1 AND last_error = 'boom'", recs[3].ID); n != 1 {
		t.Errorf("the retry settled beside the delete was not recorded")
	}
	time.Sleep(5 * time.Millisecond)
	n, err := store.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Millisecond, Limit: 10})
	if err != nil || n != 1 || count("1") != 1 {
		t.Errorf("Cleanup deleted %d records (%v), leaving %d; want the retained one deleted and the retry left", n, err, count("1"))
	}
}
