package mysqlstore

import (
	"context"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Stats implements [outbox.StatsReader] with two queries that read pending
// and dead records only.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	err := s.withRetry(ctx, "stats", func(ctx context.Context) error {
		st = outbox.Stats{}
		var oldest utcTime
		err := s.db.QueryRowContext(ctx, "SELECT"+
			" COALESCE(SUM(state = 0), 0),"+
			" COALESCE(SUM(state = 0 AND lease_owner IS NOT NULL AND available_at > UTC_TIMESTAMP(6)), 0),"+
			" COALESCE(SUM(state = 0 AND last_error <> '' AND attempts > 0), 0),"+
			" COALESCE(SUM(state = 0 AND last_error <> '' AND attempts = 0), 0),"+
			" COALESCE(SUM(state = 1), 0),"+
			" MIN(CASE WHEN state = 0 THEN created_at END)"+
			" FROM "+s.table+" WHERE state IN (0, 1)").Scan(&st.Pending, &st.Leased, &st.Retrying, &st.Replayed, &st.Dead, &oldest)
		if err != nil {
			return err
		}
		st.OldestPending = oldest.Time

		rows, err := s.db.QueryContext(ctx, "SELECT lease_owner, COUNT(*), MAX(available_at) FROM "+s.table+
			" WHERE state = 0 AND available_at > UTC_TIMESTAMP(6) AND lease_owner IS NOT NULL"+
			" GROUP BY lease_owner ORDER BY COUNT(*) DESC, lease_owner")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var owner []byte
			var until utcTime
			var rl outbox.RelayLeases
			if err := rows.Scan(&owner, &rl.Leased, &until); err != nil {
				return err
			}
			rl.Owner, rl.Until = string(owner), until.Time
			st.Relays = append(st.Relays, rl)
		}
		return rows.Err()
	})
	return st, err
}
