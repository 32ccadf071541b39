package mysqlstore

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Stats implements [outbox.StatsReader]. It reads the pending and dead
// records (the state 0 and 1 ranges of state_order, never the delivered
// ones) grouped by lane and then by topic, the lanes table and the relays
// table.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	err := s.withRetry(ctx, "stats", func(ctx context.Context) error {
		st = outbox.Stats{}
		now, err := dbNow(ctx, s.db)
		if err != nil {
			return err
		}
		lanes, err := s.readLanes(ctx)
		if err != nil {
			return err
		}
		st.Lanes = len(lanes)

		rows, err := s.db.QueryContext(ctx, "SELECT state, lane, COUNT(*),"+
			" COALESCE(SUM(attempts > 0), 0), COALESCE(SUM(attempts = 0 AND last_error <> ''), 0), MIN(created_at)"+
			" FROM "+s.table+" FORCE INDEX (state_order) WHERE state IN (0, 1) GROUP BY state, lane")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var state, lane int
			var n, retrying, replayed int64
			var oldest utcTime
			if err := rows.Scan(&state, &lane, &n, &retrying, &replayed, &oldest); err != nil {
				return err
			}
			if state == 1 {
				st.Dead += n
				continue
			}
			st.Pending += n
			st.Retrying += retrying
			st.Replayed += replayed
			if st.OldestPending.IsZero() || oldest.Time.Before(st.OldestPending) {
				st.OldestPending = oldest.Time
			}
			lag := outbox.LaneLag{Lane: lane, Pending: n, OldestPending: oldest.Time}
			if lane >= 0 && lane < len(lanes) {
				lag.Owner = lanes[lane].Owner
			}
			st.Lagging = append(st.Lagging, lag)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		slices.SortFunc(st.Lagging, func(a, b outbox.LaneLag) int {
			return cmp.Or(a.OldestPending.Compare(b.OldestPending), cmp.Compare(a.Lane, b.Lane))
		})
		st.Lagging = st.Lagging[:min(len(st.Lagging), 10)]

		if st.Topics, err = s.topicStats(ctx); err != nil {
			return err
		}

		relays, err := s.db.QueryContext(ctx, "SELECT owner, lease_until FROM "+s.relays+" WHERE lease_until > "+datetime(now))
		if err != nil {
			return err
		}
		defer relays.Close()
		for relays.Next() {
			var owner []byte
			var until utcTime
			if err := relays.Scan(&owner, &until); err != nil {
				return err
			}
			rl := outbox.RelayLanes{Owner: string(owner), Until: until.Time}
			for _, l := range lanes {
				if l.Owner == rl.Owner && l.Until.After(now) {
					rl.Lanes++
				}
			}
			st.Relays = append(st.Relays, rl)
		}
		if err := relays.Err(); err != nil {
			return err
		}
		slices.SortFunc(st.Relays, func(a, b outbox.RelayLanes) int {
			return cmp.Or(cmp.Compare(b.Lanes, a.Lanes), cmp.Compare(a.Owner, b.Owner))
		})
		return nil
	})
	return st, err
}

// topicStats reads the pending and dead records grouped by topic, in the
// order of [outbox.Stats.Topics] and as many as it lists.
func (s *Store) topicStats(ctx context.Context) ([]outbox.TopicStats, error) {
	const oldest = "MIN(CASE WHEN state = 0 THEN created_at END)"
	rows, err := s.db.QueryContext(ctx, "SELECT topic, COALESCE(SUM(state = 0), 0), COALESCE(SUM(state = 1), 0), "+oldest+
		" FROM "+s.table+" FORCE INDEX (state_order) WHERE state IN (0, 1) GROUP BY topic"+
		" ORDER BY "+oldest+" IS NULL, "+oldest+", SUM(state = 1) DESC, topic LIMIT "+strconv.Itoa(outbox.MaxStatsTopics))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var topics []outbox.TopicStats
	for rows.Next() {
		var ts outbox.TopicStats
		var oldest utcTime
		if err := rows.Scan(&ts.Topic, &ts.Pending, &ts.Dead, &oldest); err != nil {
			return nil, err
		}
		ts.OldestPending = oldest.Time
		topics = append(topics, ts)
	}
	return topics, rows.Err()
}
