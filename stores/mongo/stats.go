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

// maxLagging bounds Stats.Lagging.
const maxLagging = 10

// Stats implements [outbox.StatsReader]: four counts (pending, retrying,
// replayed, dead), the oldest pending record by CreatedAt, one aggregation
// of the pending records by lane, one of the pending records and one of
// the dead letters by topic, the lanes and the live relays. Finding the
// oldest CreatedAt and grouping read every pending record and dead letter,
// never a delivered one: the cost grows with the backlog.
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
	counts := []struct {
		into   *int64
		filter bson.D
	}{
		{&st.Pending, bson.D{pending}},
		{&st.Retrying, bson.D{pending, {Key: fAttempts, Value: bson.D{{Key: "$gt", Value: 0}}}}},
		{&st.Replayed, bson.D{pending, {Key: fAttempts, Value: bson.D{{Key: "$lte", Value: 0}}},
			{Key: fLastError, Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: ""}}}}},
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

	lanes, err := s.readLanes(ctx)
	if err != nil {
		return st, err
	}
	st.Lanes = len(lanes)
	owners := make(map[int]string, len(lanes))
	held := make(map[string]int)
	for _, l := range lanes {
		owners[l.ID] = l.Owner
		if l.Owner != "" && l.LeaseUntil != nil && l.LeaseUntil.After(now) {
			held[l.Owner]++
		}
	}
	relays, err := s.liveRelays(ctx, now)
	if err != nil {
		return st, err
	}
	for _, r := range relays {
		st.Relays = append(st.Relays, outbox.RelayLanes{Owner: r.Owner, Lanes: held[r.Owner], Until: r.LeaseUntil.UTC()})
	}
	slices.SortFunc(st.Relays, func(a, b outbox.RelayLanes) int {
		return cmp.Or(cmp.Compare(b.Lanes, a.Lanes), cmp.Compare(a.Owner, b.Owner))
	})

	if st.Topics, err = s.topicStats(ctx); err != nil {
		return st, err
	}
	lag, err := countBy[int](ctx, s.records, statePending, fLane, maxLagging)
	if err != nil {
		return st, fail("stats: lagging lanes", err)
	}
	for _, l := range lag {
		st.Lagging = append(st.Lagging, outbox.LaneLag{Lane: l.Key, Owner: owners[l.Key], Pending: l.N, OldestPending: l.Oldest.UTC()})
	}
	return st, nil
}

// group counts the records of one value of a field, in one state, with
// the oldest CreatedAt among them.
type group[K cmp.Ordered] struct {
	Key    K         `bson:"_id"`
	N      int64     `bson:"n"`
	Oldest time.Time `bson:"oldest"`
}

// countBy groups the records in state by field; with limit above zero it
// keeps the limit groups whose oldest record is oldest. It is one
// aggregation, or, on servers without the $min accumulator (FerretDB 1.x),
// a find of the field and CreatedAt of every record in state.
func countBy[K cmp.Ordered](ctx context.Context, records *mongo.Collection, state, field string, limit int) ([]group[K], error) {
	pipeline := mongo.Pipeline{
		{{Key: "$match", Value: bson.D{inState(state)}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + field},
			{Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}},
			{Key: "oldest", Value: bson.D{{Key: "$min", Value: "$" + fCreatedAt}}}}}},
	}
	if limit > 0 {
		pipeline = append(pipeline,
			bson.D{{Key: "$sort", Value: bson.D{{Key: "oldest", Value: 1}, {Key: "_id", Value: 1}}}},
			bson.D{{Key: "$limit", Value: limit}})
	}
	cur, err := records.Aggregate(ctx, pipeline)
	if err == nil {
		var groups []group[K]
		return groups, cur.All(ctx, &groups)
	}
	if !hasCode(err, codeNotImplemented) {
		return nil, err
	}
	cur, err = records.Find(ctx, bson.D{inState(state)},
		options.Find().SetProjection(bson.D{{Key: field, Value: 1}, {Key: fCreatedAt, Value: 1}}))
	if err != nil {
		return nil, err
	}
	defer func() { _ = cur.Close(ctx) }()
	byKey := make(map[K]*group[K])
	for cur.Next(ctx) {
		var key K
		if err := cur.Current.Lookup(field).Unmarshal(&key); err != nil {
			return nil, err
		}
		var d struct {
			CreatedAt time.Time `bson:"created_at"`
		}
		if err := cur.Decode(&d); err != nil {
			return nil, err
		}
		g := byKey[key]
		if g == nil {
			g = &group[K]{Key: key, Oldest: d.CreatedAt}
			byKey[key] = g
		}
		g.N++
		if d.CreatedAt.Before(g.Oldest) {
			g.Oldest = d.CreatedAt
		}
	}
	if err := cur.Err(); err != nil {
		return nil, err
	}
	groups := make([]group[K], 0, len(byKey))
	for _, g := range byKey {
		groups = append(groups, *g)
	}
	if limit > 0 {
		slices.SortFunc(groups, func(a, b group[K]) int { return cmp.Or(a.Oldest.Compare(b.Oldest), cmp.Compare(a.Key, b.Key)) })
		groups = groups[:min(len(groups), limit)]
	}
	return groups, nil
}

// topicStats groups the pending records and the dead letters by topic, each
// state matched alone so that each aggregation reads its records only, and
// keeps the topics that [outbox.Stats.Topics] lists.
func (s *Store) topicStats(ctx context.Context) ([]outbox.TopicStats, error) {
	byTopic := make(map[string]*outbox.TopicStats)
	for _, state := range []string{statePending, stateDead} {
		counts, err := countBy[string](ctx, s.records, state, fTopic, 0)
		if err != nil {
			return nil, fail("stats: topics", err)
		}
		for _, c := range counts {
			ts := byTopic[c.Key]
			if ts == nil {
				ts = &outbox.TopicStats{Topic: c.Key}
				byTopic[c.Key] = ts
			}
			if state == stateDead {
				ts.Dead = c.N
				continue
			}
			ts.Pending, ts.OldestPending = c.N, c.Oldest.UTC()
		}
	}
	topics := make([]outbox.TopicStats, 0, len(byTopic))
	for _, ts := range byTopic {
		topics = append(topics, *ts)
	}
	return outbox.SortTopicStats(topics), nil
}
