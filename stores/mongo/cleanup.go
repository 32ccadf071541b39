package mongostore

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Cleanup implements [outbox.Cleaner]: it deletes up to p.Limit records
// delivered more than p.OlderThan ago (by the server's clock), oldest
// first, in two round trips (find the IDs on the "delivered" index, then
// deleteMany). Pending and dead records are never deleted. With p.Limit
// zero or less it deletes all of them in one deleteMany.
//
// The per-key counter documents ("<Collection>.keys") are kept: one small
// document per distinct key ever written.
func (s *Store) Cleanup(ctx context.Context, p outbox.CleanupParams) (int, error) {
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	now, err := s.server.now(ctx)
	if err != nil {
		return 0, err
	}
	old := bson.D{inState(stateDelivered), {Key: fDeliveredAt, Value: bson.D{{Key: "$lt", Value: now.Add(-p.OlderThan)}}}}
	filter := old
	if p.Limit > 0 {
		cur, err := s.records.Find(ctx, old, options.Find().
			SetSort(bson.D{{Key: fDeliveredAt, Value: 1}}).SetLimit(int64(p.Limit)).
			SetProjection(bson.D{{Key: fID, Value: 1}}))
		if err != nil {
			return 0, fail("cleanup", err)
		}
		var docs []struct {
			ID string `bson:"_id"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			return 0, fail("cleanup", err)
		}
		if len(docs) == 0 {
			return 0, nil
		}
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		filter = append(bson.D{idsIn(ids)}, old...)
	}
	res, err := s.records.DeleteMany(ctx, filter)
	if err != nil {
		return 0, fail("cleanup", err)
	}
	return int(res.DeletedCount), nil
}
