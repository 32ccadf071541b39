package mongostore

import (
	"context"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

var _ outbox.Inspector = (*Store)(nil)

// Inspect implements [outbox.Inspector]: a record by its _id, or the
// pending and dead records of a key, through the partial indexes of those
// states (the pending index holds the key, so the key is tested in the
// index; delivered records kept by retention are never read).
func (s *Store) Inspect(ctx context.Context, p outbox.InspectParams) ([]outbox.InspectedRecord, error) {
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	filter := bson.D{{Key: fID, Value: strings.ToLower(p.ID)}}
	opts := options.Find().SetLimit(1)
	if p.ID == "" {
		filter = bson.D{{Key: fState, Value: bson.D{{Key: "$in", Value: bson.A{statePending, stateDead}}}}, {Key: fKey, Value: p.Key}}
		opts = options.Find().SetSort(bson.D{{Key: fSeq, Value: 1}, {Key: fID, Value: 1}}).SetLimit(int64(limit))
	}
	cur, err := s.records.Find(ctx, filter, opts)
	if err != nil {
		return nil, fail("inspect records", err)
	}
	var docs []recordDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fail("inspect records", err)
	}
	out := make([]outbox.InspectedRecord, len(docs))
	for i, d := range docs {
		out[i] = outbox.InspectedRecord{Record: d.record()}
		if d.DeadAt != nil && d.State == stateDead {
			out[i].DeadAt = d.DeadAt.UTC()
		}
		if d.DeliveredAt != nil {
			out[i].DeliveredAt = d.DeliveredAt.UTC()
		}
	}
	return out, nil
}
