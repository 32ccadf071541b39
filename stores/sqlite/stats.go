package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"slices"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Stats implements [outbox.StatsReader]. It reads one snapshot (a read
// transaction takes no lock in WAL mode) and counts the pending records by
// lane and by topic, and the dead letters by topic, through their partial
// indexes, which costs time in proportion to the backlog.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, translate("Stats", err)
	}
	defer func() { _ = tx.Rollback() }()
	now := s.clock()

	var owners []string // by lane
	rows, err := tx.QueryContext(ctx, s.q.statsLanes)
	if err != nil {
		return st, translate("Stats", err)
	}
	for rows.Next() {
		var lane int
		var owner string
		if err := rows.Scan(&lane, &owner); err != nil {
			rows.Close()
			return st, translate("Stats", err)
		}
		owners = append(owners, owner)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, translate("Stats", err)
	}
	st.Lanes = len(owners)

	rows, err = tx.QueryContext(ctx, s.q.statsPending)
	if err != nil {
		return st, translate("Stats", err)
	}
	for rows.Next() {
		var l outbox.LaneLag
		var retrying, replayed, oldest int64
		if err := rows.Scan(&l.Lane, &l.Pending, &retrying, &replayed, &oldest); err != nil {
			rows.Close()
			return st, translate("Stats", err)
		}
		l.OldestPending = micros(oldest)
		if l.Lane >= 0 && l.Lane < len(owners) {
			l.Owner = owners[l.Lane]
		}
		st.Pending += l.Pending
		st.Retrying += retrying
		st.Replayed += replayed
		if st.OldestPending.IsZero() || l.OldestPending.Before(st.OldestPending) {
			st.OldestPending = l.OldestPending
		}
		st.Lagging = append(st.Lagging, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, translate("Stats", err)
	}
	slices.SortFunc(st.Lagging, func(a, b outbox.LaneLag) int {
		return cmp.Or(a.OldestPending.Compare(b.OldestPending), cmp.Compare(a.Lane, b.Lane))
	})
	st.Lagging = st.Lagging[:min(len(st.Lagging), 10)]

	if err := tx.QueryRowContext(ctx, s.q.statsDead).Scan(&st.Dead); err != nil {
		return st, translate("Stats", err)
	}
	if st.Topics, err = topicStats(ctx, tx, s.q.statsTopics); err != nil {
		return st, translate("Stats", err)
	}
	rows, err = tx.QueryContext(ctx, s.q.statsRelays, now)
	if err != nil {
		return st, translate("Stats", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rl outbox.RelayLanes
		var until int64
		if err := rows.Scan(&rl.Owner, &until, &rl.Lanes); err != nil {
			return st, translate("Stats", err)
		}
		rl.Until = micros(until)
		st.Relays = append(st.Relays, rl)
	}
	return st, translate("Stats", rows.Err())
}

// topicStats runs the statsTopics query in tx.
func topicStats(ctx context.Context, tx *sql.Tx, query string) ([]outbox.TopicStats, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var topics []outbox.TopicStats
	for rows.Next() {
		var ts outbox.TopicStats
		var oldest sql.NullInt64
		if err := rows.Scan(&ts.Topic, &ts.Pending, &ts.Dead, &oldest); err != nil {
			return nil, err
		}
		if oldest.Valid {
			ts.OldestPending = micros(oldest.Int64)
		}
		topics = append(topics, ts)
	}
	return topics, rows.Err()
}
