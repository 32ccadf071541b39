package conformance

import (
	"slices"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// inspectTests prove [outbox.Inspector]: a record is found by its ID in
// every state it can be found in, and a key lists its pending and dead
// records in order, with their attempts, errors and retry times.
var inspectTests = []storeTest{
	{"InspectByIDAndKey", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		in := needCapability[outbox.Inspector](t, ob.Store, "Inspector")
		r := hold(t, ctx, ob.Store, "a", hour)

		// Key k: the first delivered (retained), the second dead, the
		// third retrying, the fourth waiting behind it. Key other: one
		// pending record.
		msgs := write(t, ctx, ob, newMessages("t", "k", 4)...)
		other := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "other", Headers: map[string]string{"h": "v"}})
		recs := r.read(10)
		if len(recs) != 5 {
			t.Fatalf("read %d records; want 5", len(recs))
		}
		r.deliver(recs[0])
		r.dead("rejected", recs[1])
		before := time.Now()
		r.retry("timeout", hour, recs[2])

		byID := func(id string) outbox.InspectedRecord {
			t.Helper()
			got, err := in.Inspect(ctx, outbox.InspectParams{ID: id})
			if err != nil || len(got) != 1 || got[0].ID != id {
				t.Fatalf("Inspect(ID %s) = %v, %v; want that record", id, inspectedIDs(got), err)
			}
			return got[0]
		}
		if got := byID(msgs[0].ID); got.DeliveredAt.IsZero() || !got.DeadAt.IsZero() {
			t.Errorf("delivered record: DeliveredAt %v, DeadAt %v; want delivered only", got.DeliveredAt, got.DeadAt)
		}
		if got := byID(msgs[1].ID); got.DeadAt.IsZero() || !got.DeliveredAt.IsZero() || got.LastError != "rejected" || got.Attempts != 1 {
			t.Errorf("dead record: %+v; want DeadAt set, LastError rejected, 1 attempt", got)
		}
		got := byID(msgs[2].ID)
		if !got.DeadAt.IsZero() || !got.DeliveredAt.IsZero() || got.LastError != "timeout" || got.Attempts != 1 ||
			got.NotBefore.Before(before.Add(hour-time.Minute)) {
			t.Errorf("retrying record: %+v; want pending, LastError timeout, 1 attempt, NotBefore about an hour ahead", got)
		}
		if got.Key != "k" || got.Topic != "t" || got.Lane != outbox.LaneOf("k", got.ID, len(r.view().Lanes)) || got.Seq == 0 {
			t.Errorf("retrying record: Key %q Topic %q Lane %d Seq %d; want k, t, LaneOf(k), a position", got.Key, got.Topic, got.Lane, got.Seq)
		}
		if got := byID(other[0].ID); got.Headers["h"] != "v" || string(got.Payload) != string(other[0].Payload) {
			t.Errorf("pending record: headers %v payload %q; want the written ones", got.Headers, got.Payload)
		}
		if got, err := in.Inspect(ctx, outbox.InspectParams{ID: "0190aaaa-0000-7000-8000-000000000000"}); err != nil || len(got) != 0 {
			t.Errorf("Inspect(unknown ID) = %v, %v; want nothing", inspectedIDs(got), err)
		}

		// By key: the dead, retrying and waiting records, in order; not
		// the delivered one; the limit keeps the first.
		keyed, err := in.Inspect(ctx, outbox.InspectParams{Key: "k"})
		if want := []string{msgs[1].ID, msgs[2].ID, msgs[3].ID}; err != nil || !slices.Equal(inspectedIDs(keyed), want) {
			t.Fatalf("Inspect(key k) = %v, %v; want %v", inspectedIDs(keyed), err, want)
		}
		if keyed[0].DeadAt.IsZero() || !keyed[1].DeadAt.IsZero() || keyed[2].Attempts != 0 {
			t.Errorf("Inspect(key k) states: dead %v, %v; attempts of the last %d; want dead, pending, 0", keyed[0].DeadAt, keyed[1].DeadAt, keyed[2].Attempts)
		}
		if got, err := in.Inspect(ctx, outbox.InspectParams{Key: "k", Limit: 2}); err != nil || !slices.Equal(inspectedIDs(got), []string{msgs[1].ID, msgs[2].ID}) {
			t.Errorf("Inspect(key k, limit 2) = %v, %v; want the first two", inspectedIDs(got), err)
		}
		if got, err := in.Inspect(ctx, outbox.InspectParams{Key: "nobody"}); err != nil || len(got) != 0 {
			t.Errorf("Inspect(unknown key) = %v, %v; want nothing", inspectedIDs(got), err)
		}

		// Delivered without retention: gone.
		r.deliverAndDelete(recs[4])
		if got, err := in.Inspect(ctx, outbox.InspectParams{ID: other[0].ID}); err != nil || len(got) != 0 {
			t.Errorf("Inspect(ID of a record delivered and deleted) = %v, %v; want nothing", inspectedIDs(got), err)
		}
	}},
}

func inspectedIDs(recs []outbox.InspectedRecord) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}
