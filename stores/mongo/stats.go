package mongostore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Stats implements [outbox.StatsReader] with six queries: four counts
// (pending, retrying, replayed, dead), the oldest pending record by CreatedAt, and
// the leased records (at most what the relays hold). Finding the oldest
// CreatedAt sorts the pending records without an index: its cost grows
// with the backlog.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	ctx = withoutSession(ctx)
	var st outbox.Stats
	if err := s.ready(ctx); err != nil {
		return st, err
	}
	now, err := s.server.now(ctx)
	if err != nil {
		return st, err
	}
	pending := inState(statePending)
	failed := bson.E{Key: fLastError, Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: ""}}}
	counts := []struct {
		into   *int64
		filter bson.D
	}{
		{&st.Pending, bson.D{pending}},
		{&st.Retrying, bson.D{pending, failed, {Key: fAttempts, Value: bson.D{{Key: "$gt", Value: 0}}}}},
		{&st.Replayed, bson.D{pending, failed, {Key: fAttempts, Value: bson.D{{Key: "$lte", Value: 0}}}}},
		{&st.Dead, bson.D{inState(stateDead)}},
	}
	for _, c := range counts {
		if *c.into, err = s.records.CountDocuments(ctx, c.filter); err != nil {
			return st, fail("stats", err)
		}
	}

	var oldest struct {
		CreatedAt time.Time `bson:"created_at"`
	}
	err = s.records.FindOne(ctx, bson.D{pending}, options.FindOne().
		SetSort(bson.D{{Key: fCreatedAt, Value: 1}}).SetProjection(bson.D{{Key: fCreatedAt, Value: 1}})).Decode(&oldest)
	switch {
	case err == nil:
		st.OldestPending = oldest.CreatedAt.UTC()
	case !errors.Is(err, mongo.ErrNoDocuments):
		return st, fail("stats", err)
	}

	cur, err := s.records.Find(ctx, bson.D{pending, {Key: fLeaseUntil, Value: bson.D{{Key: "$gt", Value: now}}}},
		options.Find().SetProjection(bson.D{{Key: fLeaseOwner, Value: 1}, {Key: fLeaseUntil, Value: 1}}))
	if err != nil {
		return st, fail("stats", err)
	}
	var leases []struct {
		Owner string    `bson:"lease_owner"`
		Until time.Time `bson:"lease_until"`
	}
	if err := cur.All(ctx, &leases); err != nil {
		return st, fail("stats", err)
	}
	relays := make(map[string]*outbox.RelayLeases)
	for _, l := range leases {
		rl := relays[l.Owner]
		if rl == nil {
			rl = &outbox.RelayLeases{Owner: l.Owner}
			relays[l.Owner] = rl
		}
		rl.Leased++
		if l.Until.After(rl.Until) {
			rl.Until = l.Until.UTC()
		}
	}
	st.Leased = int64(len(leases))
	for _, rl := range relays {
		st.Relays = append(st.Relays, *rl)
	}
	slices.SortFunc(st.Relays, func(a, b outbox.RelayLeases) int {
		if a.Leased != b.Leased {
			return cmp.Compare(b.Leased, a.Leased)
		}
		return cmp.Compare(a.Owner, b.Owner)
	})
	return st, nil
}
