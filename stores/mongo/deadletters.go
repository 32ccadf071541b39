package mongostore

import (
	"context"
	"maps"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ListDead implements [outbox.DeadLetterStore]: dead letters by sequence
// number (write order within a key, roughly write time across keys).
// Sequence numbers of different keys may be equal, so pages are ordered by
// (Seq, ID) and resume after AfterSeq and AfterID.
func (s *Store) ListDead(ctx context.Context, p outbox.ListDeadParams) ([]outbox.DeadLetter, error) {
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	after := bson.E{Key: fSeq, Value: bson.D{{Key: "$gt", Value: p.AfterSeq}}}
	if p.AfterID != "" {
		after = bson.E{Key: "$or", Value: bson.A{
			bson.D{after},
			bson.D{{Key: fSeq, Value: p.AfterSeq}, {Key: fID, Value: bson.D{{Key: "$gt", Value: p.AfterID}}}},
		}}
	}
	filter := bson.D{inState(stateDead), after}
	if len(p.IDs) > 0 {
		filter = append(filter, idsIn(p.IDs))
	}
	cur, err := s.records.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: fSeq, Value: 1}, {Key: fID, Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fail("list dead letters", err)
	}
	var docs []recordDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fail("list dead letters", err)
	}
	out := make([]outbox.DeadLetter, len(docs))
	for i := range docs {
		out[i] = outbox.DeadLetter{Record: docs[i].record()}
		if docs[i].DeadAt != nil {
			out[i].DeadAt = docs[i].DeadAt.UTC()
		}
	}
	return out, nil
}

// ReplayDead implements [outbox.DeadLetterStore]: one updateMany makes
// the dead letters pending again with no attempts and no retry delay; they
// keep their last error.
func (s *Store) ReplayDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	filter, ok := selectDead(p)
	if !ok {
		return 0, nil
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	res, err := s.records.UpdateMany(ctx, filter, bson.D{
		{Key: "$set", Value: bson.D{inState(statePending), {Key: fAttempts, Value: int32(0)}}},
		{Key: "$unset", Value: bson.D{{Key: fDeadAt, Value: ""}, {Key: fNotBefore, Value: ""}}},
	})
	if err != nil {
		return 0, fail("replay dead letters", err)
	}
	return int(res.ModifiedCount), nil
}

// waitingKeysPerQuery bounds the keys of one WaitingBehindDead aggregation.
const waitingKeysPerQuery = 100

// WaitingBehindDead implements [outbox.DeadLetterBacklog]: it reads the
// earliest selected dead letter of each key, then counts the pending
// records of those keys after them, for up to waitingKeysPerQuery keys per
// aggregation.
func (s *Store) WaitingBehindDead(ctx context.Context, p outbox.SelectDead) (outbox.Waiting, error) {
	var w outbox.Waiting
	filter, ok := selectDead(p)
	if !ok {
		return w, nil
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return w, err
	}
	cur, err := s.records.Find(ctx, append(filter, bson.E{Key: fKey, Value: bson.D{{Key: "$ne", Value: ""}}}),
		options.Find().SetProjection(bson.D{{Key: fKey, Value: 1}, {Key: fSeq, Value: 1}}))
	if err != nil {
		return w, fail("count the records behind dead letters", err)
	}
	var dead []struct {
		Key string `bson:"key"`
		Seq int64  `bson:"seq"`
	}
	if err := cur.All(ctx, &dead); err != nil {
		return w, fail("count the records behind dead letters", err)
	}
	first := make(map[string]int64) // the earliest selected dead letter of each key
	for _, d := range dead {
		if seq, ok := first[d.Key]; !ok || d.Seq < seq {
			first[d.Key] = d.Seq
		}
	}
	keys := slices.Sorted(maps.Keys(first))
	for chunk := range slices.Chunk(keys, waitingKeysPerQuery) {
		after := make(bson.A, len(chunk))
		for i, k := range chunk {
			after[i] = bson.D{{Key: fKey, Value: k}, {Key: fSeq, Value: bson.D{{Key: "$gt", Value: first[k]}}}}
		}
		cur, err := s.records.Aggregate(ctx, mongo.Pipeline{
			{{Key: "$match", Value: bson.D{inState(statePending), {Key: "$or", Value: after}}}},
			{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + fKey}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		})
		if err != nil {
			return w, fail("count the records behind dead letters", err)
		}
		var groups []struct {
			N int64 `bson:"n"`
		}
		if err := cur.All(ctx, &groups); err != nil {
			return w, fail("count the records behind dead letters", err)
		}
		for _, g := range groups {
			w.Records += g.N
			w.Keys++
		}
	}
	return w, nil
}

// PurgeDead implements [outbox.DeadLetterStore]: one deleteMany.
func (s *Store) PurgeDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	filter, ok := selectDead(p)
	if !ok {
		return 0, nil
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	res, err := s.records.DeleteMany(ctx, filter)
	if err != nil {
		return 0, fail("purge dead letters", err)
	}
	return int(res.DeletedCount), nil
}

// selectDead is the filter of the dead letters p selects, and false when
// it selects none.
func selectDead(p outbox.SelectDead) (bson.D, bool) {
	filter := bson.D{inState(stateDead)}
	switch {
	case p.All:
		return filter, true
	case len(p.IDs) > 0:
		return append(filter, idsIn(p.IDs)), true
	}
	return nil, false
}
