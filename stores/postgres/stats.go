package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Stats reports the backlog, the dead letters, both per topic too, the live
// relays with the lanes they hold, and the lanes that lag most, in one round
// trip. It reads
// every undelivered record through the partial indexes of pending records
// and of dead letters, never a delivered one, so its cost grows with the
// backlog, not with the retained history (TestStatsReadsNoDelivery). It
// implements [outbox.StatsReader].
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	b := &pgx.Batch{}
	b.Queue(s.sql.statsGuard)
	b.Queue(s.sql.stats).QueryRow(func(row pgx.Row) error {
		var oldest *time.Time
		if err := row.Scan(&st.Pending, &st.Retrying, &st.Replayed, &st.Dead, &oldest, &st.Lanes); err != nil {
			return err
		}
		if oldest != nil {
			st.OldestPending = oldest.UTC()
		}
		return nil
	})
	b.Queue(s.sql.statsTopics).Query(func(rows pgx.Rows) error {
		var err error
		st.Topics, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.TopicStats, error) {
			var ts outbox.TopicStats
			var oldest *time.Time
			if err := row.Scan(&ts.Topic, &ts.Pending, &ts.Dead, &oldest); err != nil {
				return ts, err
			}
			if oldest != nil {
				ts.OldestPending = oldest.UTC()
			}
			return ts, nil
		})
		return err
	})
	b.Queue(s.sql.statsRelays).Query(func(rows pgx.Rows) error {
		var err error
		st.Relays, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.RelayLanes, error) {
			var rl outbox.RelayLanes
			err := row.Scan(&rl.Owner, &rl.Lanes, &rl.Until)
			rl.Until = rl.Until.UTC()
			return rl, err
		})
		return err
	})
	b.Queue(s.sql.statsLagging).Query(func(rows pgx.Rows) error {
		var err error
		st.Lagging, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.LaneLag, error) {
			var l outbox.LaneLag
			err := row.Scan(&l.Lane, &l.Owner, &l.Pending, &l.OldestPending)
			l.OldestPending = l.OldestPending.UTC()
			return l, err
		})
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return outbox.Stats{}, translate("stats", err)
	}
	return st, nil
}
