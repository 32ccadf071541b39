package mongostore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// pendingIndex is the name of the index that Read walks.
const pendingIndex = "pending"

// Read implements [outbox.Store] with one find:
//
//	{state: "pending", lane: {$in: lanes}, seq: {$gt: after}, _id: {$nin: skipIDs}, key: {$nin: skipKeys}}
//	sort {seq: 1}, limit n, hint "pending"
//
// The "pending" index {state, seq, lane, key} returns the records in Seq
// order and filters lanes and keys on its own keys, so the server fetches
// only the documents of the lanes read and never sorts the backlog
// (explain shows FETCH over IXSCAN, no SORT stage). The skipped IDs (the
// records the relay holds, at the head of its lanes) are tested in the
// FETCH stage: each one costs a document fetch, as a record returned does. The hint keeps the plan fixed. With
// StrictOrder a covered find on the "dead_key" index first reads the
// earliest dead letter of each key; records after one are left out as the
// cursor goes, and the find then reads on until it has p.Limit records.
// Read takes no lock and writes nothing. On FerretDB, which pushes only
// equalities down to its backend, a read of up to 16 lanes runs one find
// per lane (lane: equality) and merges them.
func (s *Store) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("%w: mongostore: Read needs a positive limit", outbox.ErrInvalidConfig)
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	if len(p.Lanes) == 0 {
		return nil, nil
	}
	var deadFrom map[string]int64
	if p.StrictOrder {
		var err error
		if deadFrom, err = s.deadKeys(ctx); err != nil {
			return nil, err
		}
	}
	if s.server.isFerret() && len(p.Lanes) <= ferretLaneQueries {
		// FerretDB pushes only equalities down to PostgreSQL and decodes
		// every record the pushed-down filter lets through: one find per
		// lane decodes the held lanes' backlog instead of the whole one.
		var out []outbox.Record
		for _, lane := range p.Lanes {
			q := p
			q.Lanes = []int{lane}
			recs, err := s.find(ctx, q, deadFrom)
			if err != nil {
				return nil, err
			}
			out = append(out, recs...)
		}
		slices.SortFunc(out, func(a, b outbox.Record) int { return cmp.Compare(a.Seq, b.Seq) })
		return out[:min(len(out), p.Limit)], nil
	}
	return s.find(ctx, p, deadFrom)
}

// ferretLaneQueries is the most lanes that Read reads one find at a time
// on FerretDB.
const ferretLaneQueries = 16

// find runs Read's find and returns up to p.Limit records, leaving out those
// behind a dead letter of deadFrom.
func (s *Store) find(ctx context.Context, p outbox.ReadParams, deadFrom map[string]int64) ([]outbox.Record, error) {
	filter, opts := s.readQuery(p)
	if len(deadFrom) > 0 {
		// Records behind a dead letter are dropped here, so the find reads
		// on until it has enough.
		opts.SetLimit(0).SetBatchSize(int32(min(max(p.Limit, 100), 5000)))
	}
	cur, err := s.records.Find(ctx, filter, opts)
	if err != nil {
		return nil, fail("read", err)
	}
	defer func() { _ = cur.Close(ctx) }()
	out := make([]outbox.Record, 0, min(p.Limit, 1000))
	for len(out) < p.Limit && cur.Next(ctx) {
		var d recordDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fail("read", err)
		}
		if d.Key != "" {
			if dead, ok := deadFrom[d.Key]; ok && dead < d.Seq {
				continue
			}
		}
		out = append(out, d.record())
	}
	if err := cur.Err(); err != nil {
		return nil, fail("read", err)
	}
	return out, nil
}

// readQuery is Read's find.
func (s *Store) readQuery(p outbox.ReadParams) (bson.D, *options.FindOptionsBuilder) {
	lanes := bson.E{Key: fLane, Value: bson.D{{Key: "$in", Value: p.Lanes}}}
	if len(p.Lanes) == 1 {
		lanes.Value = p.Lanes[0] // an equality, which FerretDB pushes down
	}
	filter := bson.D{inState(statePending), {Key: fSeq, Value: bson.D{{Key: "$gt", Value: p.AfterSeq}}}, lanes}
	if len(p.SkipIDs) > 0 {
		filter = append(filter, bson.E{Key: fID, Value: bson.D{{Key: "$nin", Value: p.SkipIDs}}})
	}
	if len(p.SkipKeys) > 0 {
		filter = append(filter, bson.E{Key: fKey, Value: bson.D{{Key: "$nin", Value: p.SkipKeys}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: fSeq, Value: 1}}).SetLimit(int64(p.Limit))
	if !s.server.isFerret() {
		opts.SetHint(pendingIndex) // FerretDB 1.x ignores hints or refuses them
	}
	return filter, opts
}

// deadKeys returns the lowest dead Seq of each key that has dead letters,
// from a covered scan of the "dead_key" index.
func (s *Store) deadKeys(ctx context.Context) (map[string]int64, error) {
	filter := bson.D{inState(stateDead), {Key: fKey, Value: bson.D{{Key: "$gt", Value: ""}}}}
	opts := options.Find().SetProjection(bson.D{{Key: fID, Value: 0}, {Key: fKey, Value: 1}, {Key: fSeq, Value: 1}}).
		SetSort(bson.D{{Key: fState, Value: 1}, {Key: fKey, Value: 1}, {Key: fSeq, Value: 1}})
	cur, err := s.records.Find(ctx, filter, opts)
	if err != nil {
		return nil, fail("read: dead letters", err)
	}
	var dead []struct {
		Key string `bson:"key"`
		Seq int64  `bson:"seq"`
	}
	if err := cur.All(ctx, &dead); err != nil {
		return nil, fail("read: dead letters", err)
	}
	from := make(map[string]int64, len(dead))
	for _, d := range dead {
		if old, ok := from[d.Key]; !ok || d.Seq < old {
			from[d.Key] = d.Seq
		}
	}
	return from, nil
}
