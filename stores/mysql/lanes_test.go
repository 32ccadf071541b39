package mysqlstore

import (
	"context"
	"errors"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// TestMigrateFixesTheLaneCount: the first Migrate creates Config.Lanes lane
// rows; a later Migrate with another count keeps them, and every store of
// the table, whatever its Config.Lanes, writes and reports with the count
// in the table.
func TestMigrateFixesTheLaneCount(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	first := newStore(t, db, Config{Lanes: 8})
	second := newStore(t, db, Config{Lanes: 64})
	third, err := New(db, Config{Lanes: 2}) // never migrated: reads the count when it first needs it
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"first": first, "second": second, "third": third} {
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Lanes != 8 {
			t.Errorf("%s store: Stats.Lanes = %d, want 8", name, st.Lanes)
		}
		msgs := enqueue(t, ctx, db, s, keyed("t", name, 1)...)
		msgs = append(msgs, enqueue(t, ctx, db, s, outbox.Message{Topic: "t"})...)
		var lanes []int
		rows, err := db.QueryContext(ctx, "SELECT lane FROM "+s.table+" WHERE id IN (?, ?) ORDER BY seq", msgs[0].ID, msgs[1].ID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var l int
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			lanes = append(lanes, l)
		}
		rows.Close()
		for i, m := range msgs {
			if want := outbox.LaneOf(m.Key, m.ID, 8); len(lanes) != 2 || lanes[i] != want {
				t.Errorf("%s store: record %q/%s is in lane %v, want %d of 8", name, m.Key, m.ID, lanes, want)
			}
		}
	}
	view, err := third.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(view.Lanes) != 8 || view.Lanes[7].ID != 7 || len(view.Relays) != 1 || view.Relays[0] != "a" {
		t.Fatalf("SyncLanes = %+v; want lanes 0 to 7 and relay a", view)
	}
}

// TestEnqueueKeepsTheLaneCount: the count is read once per Store, not on
// every Enqueue (which stays one statement in the caller's transaction).
func TestEnqueueKeepsTheLaneCount(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	newStore(t, db, Config{Lanes: 4})
	s, err := New(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, ctx, db, s, keyed("t", "k", 1)...)
	if _, err := db.ExecContext(ctx, "RENAME TABLE "+s.lanes+" TO `outbox_lanes_away`"); err != nil {
		t.Fatal(err)
	}
	enqueue(t, ctx, db, s, keyed("t", "k", 1)...) // the count is known: the lanes table is not read again

	fresh, err := New(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fresh.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); !errors.Is(err, outbox.ErrSchemaMissing) {
		t.Fatalf("Enqueue without the lanes table = %v, want ErrSchemaMissing", err)
	}
}

// TestSettleAfterTakeover: a relay whose lane was taken over after its
// lease expired settles nothing of that lane; TakeLanes charges the first
// records of the lane it took from the expired owner, and nothing when the
// lanes were released.
func TestSettleAfterTakeover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{Lanes: 1})
	msgs := enqueue(t, ctx, db, s, keyed("t", "k", 4)...)

	take := func(owner string, lease time.Duration, charge int) []outbox.Lane {
		t.Helper()
		view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: lease, Lanes: []outbox.Lane{view.Lanes[0].Lane}, Charge: charge})
		if err != nil {
			t.Fatal(err)
		}
		return taken
	}
	old := take("old", 10*time.Millisecond, 2)
	if len(old) != 1 || old[0].Epoch != 1 {
		t.Fatalf("the first TakeLanes = %v, want lane 0 at epoch 1", old)
	}
	recs := readOK(t, ctx, s, old, 10)
	time.Sleep(50 * time.Millisecond)
	now := take("new", time.Hour, 2)
	if len(now) != 1 || now[0].Epoch != 2 {
		t.Fatalf("the takeover = %v, want lane 0 at epoch 2", now)
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: old, Delivered: []string{recs[0].ID},
		Retries: []outbox.Retry{{ID: recs[1].ID, Error: "late"}}, Dead: []outbox.Failure{{ID: recs[2].ID, Error: "late"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: old, Delivered: []string{recs[3].ID}}); err != nil {
		t.Fatal(err)
	}
	after := readOK(t, ctx, s, now, 10)
	if len(after) != 4 {
		t.Fatalf("after the old owner's late settles, read %d records, want all 4", len(after))
	}
	for i, r := range after {
		want := 0
		if i < 2 {
			want = 1 // charged by the takeover
		}
		if r.ID != msgs[i].ID || r.Attempts != want || r.LastError != "" {
			t.Errorf("record %d = %s, %d attempts, error %q; want %s with %d attempts and no error", i, r.ID, r.Attempts, r.LastError, msgs[i].ID, want)
		}
	}

	// A released lane is taken without charge.
	if err := s.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "new", Lanes: now, Leave: true}); err != nil {
		t.Fatal(err)
	}
	again := take("third", time.Hour, 4)
	if len(again) != 1 || again[0].Epoch != 3 {
		t.Fatalf("TakeLanes of a released lane = %v, want lane 0 at epoch 3", again)
	}
	if recs := readOK(t, ctx, s, again, 10); recs[0].Attempts != 1 || recs[3].Attempts != 0 {
		t.Fatalf("after taking a released lane, attempts are %d..%d; want them unchanged (1, 0)", recs[0].Attempts, recs[3].Attempts)
	}
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "third", Lease: time.Minute, Held: again})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range view.Relays {
		if r == "new" {
			t.Errorf("relay new left, but SyncLanes lists it: %v", view.Relays)
		}
	}
}
