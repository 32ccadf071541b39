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
	lag, err := s.lagging(ctx)
	if err != nil {
		return st, err
	}
	for _, l := range lag {
		st.Lagging = append(st.Lagging, outbox.LaneLag{Lane: l.Lane, Owner: owners[l.Lane], Pending: l.N, OldestPending: l.Oldest.UTC()})
	}
	return st, nil
}

// laneLag is the backlog of one lane.
type laneLag struct {
	Lane   int       `bson:"_id"`
	N      int64     `bson:"n"`
	Oldest time.Time `bson:"oldest"`
}

// lagging returns the maxLagging lanes whose oldest pending record is
// oldest: one aggregation, or, on servers without the $min accumulator
// (FerretDB 1.x), a find of the lane and CreatedAt of every pending record.
func (s *Store) lagging(ctx context.Context) ([]laneLag, error) {
	cur, err := s.records.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{inState(statePending)}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + fLane},
			{Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}},
			{Key: "oldest", Value: bson.D{{Key: "$min", Value: "$" + fCreatedAt}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "oldest", Value: 1}, {Key: "_id", Value: 1}}}},
		{{Key: "$limit", Value: maxLagging}},
	})
	if err == nil {
		var lag []laneLag
		if err := cur.All(ctx, &lag); err != nil {
			return nil, fail("stats: lagging lanes", err)
		}
		return lag, nil
	}
	if !hasCode(err, codeNotImplemented) {
		return nil, fail("stats: lagging lanes", err)
	}
	cur, err = s.records.Find(ctx, bson.D{inState(statePending)},
		options.Find().SetProjection(bson.D{{Key: fLane, Value: 1}, {Key: fCreatedAt, Value: 1}}))
	if err != nil {
		return nil, fail("stats: lagging lanes", err)
	}
	defer func() { _ = cur.Close(ctx) }()
	byLane := make(map[int]*laneLag)
	for cur.Next(ctx) {
		var d struct {
			Lane      int       `bson:"lane"`
			CreatedAt time.Time `bson:"created_at"`
		}
		if err := cur.Decode(&d); err != nil {
			return nil, fail("stats: lagging lanes", err)
		}
		l := byLane[d.Lane]
		if l == nil {
			l = &laneLag{Lane: d.Lane, Oldest: d.CreatedAt}
			byLane[d.Lane] = l
		}
		l.N++
		if d.CreatedAt.Before(l.Oldest) {
			l.Oldest = d.CreatedAt
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fail("stats: lagging lanes", err)
	}
	lag := make([]laneLag, 0, len(byLane))
	for _, l := range byLane {
		lag = append(lag, *l)
	}
	slices.SortFunc(lag, func(a, b laneLag) int { return cmp.Or(a.Oldest.Compare(b.Oldest), cmp.Compare(a.Lane, b.Lane)) })
	return lag[:min(len(lag), maxLagging)], nil
}

// topicCount is the records of one topic in one state.
type topicCount struct {
	Topic  string    `bson:"_id"`
	N      int64     `bson:"n"`
	Oldest time.Time `bson:"oldest"`
}

// topicStats groups the pending records and the dead letters by topic, each
// state matched alone so that each aggregation reads its records only, and
// keeps the topics that [outbox.Stats.Topics] lists.
func (s *Store) topicStats(ctx context.Context) ([]outbox.TopicStats, error) {
	byTopic := make(map[string]*outbox.TopicStats)
	for _, state := range []string{statePending, stateDead} {
		counts, err := s.countByTopic(ctx, state)
		if err != nil {
			return nil, fail("stats: topics", err)
		}
		for _, c := range counts {
			ts := byTopic[c.Topic]
			if ts == nil {
				ts = &outbox.TopicStats{Topic: c.Topic}
				byTopic[c.Topic] = ts
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

// countByTopic counts the records in state by topic, with the oldest
// CreatedAt of each: one aggregation, or, on servers without the $min
// accumulator (FerretDB 1.x), a find of the topic and CreatedAt of each.
func (s *Store) countByTopic(ctx context.Context, state string) ([]topicCount, error) {
	cur, err := s.records.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{inState(state)}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + fTopic},
			{Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}},
			{Key: "oldest", Value: bson.D{{Key: "$min", Value: "$" + fCreatedAt}}}}}},
	})
	if err == nil {
		var counts []topicCount
		return counts, cur.All(ctx, &counts)
	}
	if !hasCode(err, codeNotImplemented) {
		return nil, err
	}
	cur, err = s.records.Find(ctx, bson.D{inState(state)},
		options.Find().SetProjection(bson.D{{Key: fTopic, Value: 1}, {Key: fCreatedAt, Value: 1}}))
	if err != nil {
		return nil, err
	}
	defer func() { _ = cur.Close(ctx) }()
	byTopic := make(map[string]*topicCount)
	for cur.Next(ctx) {
		var d struct {
			Topic     string    `bson:"topic"`
			CreatedAt time.Time `bson:"created_at"`
		}
		if err := cur.Decode(&d); err != nil {
			return nil, err
		}
		c := byTopic[d.Topic]
		if c == nil {
			c = &topicCount{Topic: d.Topic, Oldest: d.CreatedAt}
			byTopic[d.Topic] = c
		}
		c.N++
		if d.CreatedAt.Before(c.Oldest) {
			c.Oldest = d.CreatedAt
		}
	}
	if err := cur.Err(); err != nil {
		return nil, err
	}
	counts := make([]topicCount, 0, len(byTopic))
	for _, c := range byTopic {
		counts = append(counts, *c)
	}
	return counts, nil
}
