package sqlitestore

import (
	"context"
	"database/sql"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Stats implements [outbox.StatsReader]. It reads one snapshot (a read
// transaction takes no lock in WAL mode) and counts the pending records,
// which costs time in proportion to the backlog.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, translate("Stats", err)
	}
	defer func() { _ = tx.Rollback() }()
	now := s.clock()
	var oldest sql.NullInt64
	err = tx.QueryRowContext(ctx, s.q.stats, now).Scan(&st.Pending, &st.Leased, &st.Retrying, &st.Replayed, &oldest)
	if err != nil {
		return st, translate("Stats", err)
	}
	if oldest.Valid {
		st.OldestPending = micros(oldest.Int64)
	}
	if err := tx.QueryRowContext(ctx, s.q.statsDead).Scan(&st.Dead); err != nil {
		return st, translate("Stats", err)
	}
	rows, err := tx.QueryContext(ctx, s.q.statsRelays, now)
	if err != nil {
		return st, translate("Stats", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rl outbox.RelayLeases
		var until int64
		if err := rows.Scan(&rl.Owner, &rl.Leased, &until); err != nil {
			return st, translate("Stats", err)
		}
		rl.Until = micros(until)
		st.Relays = append(st.Relays, rl)
	}
	return st, translate("Stats", rows.Err())
}
