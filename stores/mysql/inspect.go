package mysqlstore

import (
	"context"
	"strconv"

	outbox "github.com/txoutbox/txoutbox/core"
)

var _ outbox.Inspector = (*Store)(nil)

// Inspect implements [outbox.Inspector]: a record by its ID (the by_id
// key), or the pending and dead records of a key. No index leads with the
// key of pending records (the writer would pay for it on every insert), so
// a key's lookup reads the pending and dead part of state_order: the
// backlog, at worst, never the delivered records kept by retention.
func (s *Store) Inspect(ctx context.Context, p outbox.InspectParams) ([]outbox.InspectedRecord, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	query := "SELECT " + recordColumns("") + ", dead_at, delivered_at FROM " + s.table
	var args []any
	if p.ID != "" {
		list, n := idList([]string{p.ID})
		if n == 0 {
			return nil, nil
		}
		query += " WHERE id IN " + list
	} else {
		query += " FORCE INDEX (state_order) WHERE state < 2 AND msg_key = ? ORDER BY seq LIMIT " + strconv.Itoa(limit)
		args = append(args, []byte(p.Key))
	}
	var out []outbox.InspectedRecord
	err := s.withRetry(ctx, "inspect records", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var deadAt, deliveredAt utcTime
			r, err := scanRecord(rows, &deadAt, &deliveredAt)
			if err != nil {
				return err
			}
			out = append(out, outbox.InspectedRecord{Record: r, DeadAt: deadAt.Time, DeliveredAt: deliveredAt.Time})
		}
		return rows.Err()
	})
	return out, err
}
