package mongostore_test

import (
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	outbox "github.com/txoutbox/txoutbox/core"
	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
)

// Relays racing for one lane at one epoch: exactly one gets it. On MongoDB
// a conditional update is atomic per document; on FerretDB, whose updates
// are not, the lanes lock serializes them.
func TestTakeLanesIsExclusive(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, _ := testStore(t, mongostore.Config{Lanes: 2})
	for round := range 5 {
		view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "observer", Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		lane := view.Lanes[0].Lane
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		for _, owner := range []string{"a", "b", "c", "d"} {
			wg.Go(func() {
				taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: time.Millisecond, Lanes: []outbox.Lane{lane}})
				if err != nil {
					t.Error(err)
					return
				}
				if len(taken) == 1 {
					if taken[0].Epoch != lane.Epoch+1 {
						t.Errorf("round %d: %s took lane 0 at epoch %d, want %d", round, owner, taken[0].Epoch, lane.Epoch+1)
					}
					mu.Lock()
					winners = append(winners, owner)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %v took lane 0 at epoch %d; want exactly one", round, winners, lane.Epoch)
		}
		time.Sleep(5 * time.Millisecond) // the lease expires: the next round takes it over
	}
}

// A relay whose lane was taken over settles nothing; the new owner does.
// The takeover charges the first pending records of the lane one attempt.
func TestSettleIsFencedByEpoch(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{Lanes: 1})
	msgs := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}}
	writeDirect(t, ctx, s, client, msgs...)

	old := holdAll(t, ctx, s, "old")
	// old's lease runs out; "new" takes the lane over.
	lanes := client.Database(s.Config().Database).Collection("outbox_lanes")
	if _, err := lanes.UpdateOne(ctx, bson.D{{Key: "_id", Value: 0}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lease_until", Value: time.Now().Add(-time.Minute)}}}}); err != nil {
		t.Fatal(err)
	}
	taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "new", Lease: time.Hour, Lanes: old, Charge: 2})
	if err != nil || len(taken) != 1 || taken[0].Epoch != old[0].Epoch+1 {
		t.Fatalf("TakeLanes of an expired lane = %v, %v; want it at epoch %d", taken, err, old[0].Epoch+1)
	}

	if err := s.Settle(ctx, outbox.SettleParams{Lanes: old, Delivered: []string{msgs[0].ID},
		Dead: []outbox.Failure{{ID: msgs[1].ID, Error: "late"}}}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 10})
	if err != nil || len(recs) != 3 {
		t.Fatalf("Read after the stale settle = %d records, %v; want all 3 still pending", len(recs), err)
	}
	for i, r := range recs {
		want := 0
		if i < 2 {
			want = 1
		}
		if r.Attempts != want {
			t.Errorf("record %d has %d attempts, want %d (the first 2 charged by the takeover)", i, r.Attempts, want)
		}
	}

	if err := s.Settle(ctx, outbox.SettleParams{Lanes: taken, Delivered: []string{msgs[0].ID},
		Retries: []outbox.Retry{{ID: msgs[1].ID, Error: "boom", Delay: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	recs, err = s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 10})
	if err != nil || len(recs) != 2 || recs[0].ID != msgs[1].ID {
		t.Fatalf("Read after the owner's settle = %v, %v; want records 1 and 2", ids(recs), err)
	}
	if r := recs[0]; r.Attempts != 2 || r.LastError != "boom" || time.Until(r.NotBefore) < 50*time.Minute {
		t.Errorf("the retried record = attempts %d, error %q, not before %v; want 2, boom, in an hour", r.Attempts, r.LastError, r.NotBefore)
	}
	if recs[1].NotBefore != (time.Time{}) {
		t.Errorf("a record never retried has NotBefore %v, want zero", recs[1].NotBefore)
	}
}

// A takeover charges only records that are due: one waiting out a retry
// delay (not_before in the future) was not in flight, so it is neither
// charged nor counted among the first p.Charge; one whose delay has passed
// is charged.
func TestTakeoverChargesOnlyDueRecords(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{Lanes: 1})
	msgs := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}}
	writeDirect(t, ctx, s, client, msgs...)
	old := holdAll(t, ctx, s, "old")
	db := client.Database(s.Config().Database)
	// Record 0 waits an hour; record 1's delay has passed.
	for id, notBefore := range map[string]time.Time{msgs[0].ID: time.Now().Add(time.Hour), msgs[1].ID: time.Now().Add(-time.Minute)} {
		if _, err := db.Collection("outbox").UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "not_before", Value: notBefore}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Collection("outbox_lanes").UpdateOne(ctx, bson.D{{Key: "_id", Value: 0}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lease_until", Value: time.Now().Add(-time.Minute)}}}}); err != nil {
		t.Fatal(err)
	}
	taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "new", Lease: time.Hour, Lanes: old, Charge: 2})
	if err != nil || len(taken) != 1 {
		t.Fatalf("TakeLanes of an expired lane = %v, %v; want it", taken, err)
	}
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 10})
	if err != nil || len(recs) != len(msgs) {
		t.Fatalf("Read = %d records, %v; want %d", len(recs), err, len(msgs))
	}
	for i, r := range recs {
		want := 0
		if i == 1 || i == 2 {
			want = 1
		}
		if r.ID != msgs[i].ID || r.Attempts != want {
			t.Errorf("record %d has %d attempts, want %d (the waiting record 0 is skipped, records 1 and 2 charged)", i, r.Attempts, want)
		}
	}
}

// The first Migrate fixes the lane count: a store configured with another
// count keeps it, and Enqueue stores lanes below it.
func TestLaneCountIsFixedByTheFirstMigrate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{Lanes: 4})
	cfg := s.Config()
	cfg.Lanes = 64
	other, err := mongostore.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs []outbox.Message
	for i := range 20 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: string(rune('a' + i))})
	}
	writeDirect(t, ctx, other, client, msgs...)
	st, err := other.Stats(ctx)
	if err != nil || st.Lanes != 4 || st.Pending != 20 {
		t.Fatalf("Stats = %d lanes, %d pending, %v; want 4 lanes and 20 pending", st.Lanes, st.Pending, err)
	}
	recs, err := other.Read(ctx, outbox.ReadParams{Lanes: []int{0, 1, 2, 3}, Limit: 100})
	if err != nil || len(recs) != 20 {
		t.Fatalf("Read of lanes 0-3 = %d records, %v; want all 20", len(recs), err)
	}
	for _, r := range recs {
		if want := outbox.LaneOf(r.Key, r.ID, 4); r.Lane != want {
			t.Errorf("record of key %s has lane %d, want %d", r.Key, r.Lane, want)
		}
	}
	if err := (mongostore.Config{Database: "app", Lanes: outbox.MaxLanes + 1}).Validate(); err == nil {
		t.Errorf("Validate accepted %d lanes", outbox.MaxLanes+1)
	}
}

// TestSettleDeletesUnlessRetained: a delivered settle deletes its records
// (beside failures settled in the same call); with Retain it marks them
// delivered, for Cleanup to delete.
func TestSettleDeletesUnlessRetained(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{Lanes: 4})
	msgs := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}}
	writeDirect(t, ctx, s, client, msgs...)
	lanes := holdAll(t, ctx, s, "a")
	records := client.Database(s.Config().Database).Collection(s.Config().Collection)
	count := func(filter bson.D) int64 {
		t.Helper()
		n, err := records.CountDocuments(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{msgs[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{msgs[1].ID},
		Retries: []outbox.Retry{{ID: msgs[3].ID, Error: "boom"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{msgs[2].ID}, Retain: true}); err != nil {
		t.Fatal(err)
	}
	if n := count(bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: []string{msgs[0].ID, msgs[1].ID}}}}}); n != 0 {
		t.Errorf("%d records delivered without Retain are still in the collection; want none", n)
	}
	if n := count(bson.D{{Key: "_id", Value: msgs[2].ID}, {Key: "state", Value: "delivered"}}); n != 1 {
		t.Errorf("the record delivered with Retain is not kept as delivered")
	}
	if n := count(bson.D{{Key: "_id", Value: msgs[3].ID}, {Key: "state", Value: "pending"}, {Key: "attempts", Value: 1}, {Key: "last_error", Value: "boom"}}); n != 1 {
		t.Errorf("the retry settled beside the delete was not recorded")
	}
	time.Sleep(5 * time.Millisecond)
	n, err := s.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Millisecond, Limit: 10})
	if left := count(bson.D{}); err != nil || n != 1 || left != 1 {
		t.Errorf("Cleanup deleted %d records (%v), leaving %d; want the retained one deleted and the retry left", n, err, left)
	}
}
