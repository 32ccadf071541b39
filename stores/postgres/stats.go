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
// reports the replication slot of the tailing mode too (Stats.Log), from
// the catalog views pg_replication_slots and pg_stat_replication: always
// with Config.Tail (Missing when the slot does not exist), and without it
// when a slot was left behind. The lag in seconds is shown to roles with
// pg_read_all_stats only. It implements [outbox.StatsReader].
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
	b.Queue(statsLog, s.tail.slot).Query(func(rows pgx.Rows) error {
		if s.cfg.Tail {
			st.Log = &outbox.LogStats{Slot: s.tail.slot, Missing: true}
		}
		for rows.Next() {
			l := outbox.LogStats{Slot: s.tail.slot}
			var lag, retained *int64
			var walStatus *string
			if err := rows.Scan(&l.Holder, &lag, &l.LagSeconds, &retained, &walStatus); err != nil {
				return err
			}
			l.LagBytes, l.RetainedBytes = deref(lag), deref(retained)
			l.Lost = walStatus != nil && *walStatus == "lost"
			st.Log = &l
		}
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return outbox.Stats{}, translate("stats", err)
	}
	return st, nil
}

// statsLog reads the slot of the tailing mode: who streams from it (the
// walsender's application_name is the relay's Owner), how far its confirmed
// position is behind the end of the WAL, in bytes and (flush_lag of the
// walsender) in seconds, and the WAL it retains. It reads catalog views of
// a few rows, whatever the size of the outbox. No row: there is no slot.
// Stores that do not tail read it too, to report a slot left behind by the
// tailing mode (it retains WAL until it is dropped); on a standby, where
// there is no current WAL position to compare with, the byte counts are
// null.
const statsLog = `SELECT coalesce(nullif(r.application_name, ''), 'pid ' || s.active_pid::text, ''),
	pg_wal_lsn_diff(w.lsn, s.confirmed_flush_lsn)::bigint,
	extract(epoch FROM r.flush_lag)::float8,
	pg_wal_lsn_diff(w.lsn, s.restart_lsn)::bigint,
	s.wal_status
FROM pg_replication_slots s
CROSS JOIN (SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END) AS w(lsn)
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = $1 AND s.database = current_database()`

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
