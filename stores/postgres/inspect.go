package pgstore

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

var _ outbox.Inspector = (*Store)(nil)

// inspectByID finds one record by its primary key, in any state.
const inspectByID = `SELECT ` + recordColumns + `, dead_at, delivered_at FROM {table} WHERE id = $1::uuid`

// inspectByKey lists the pending and dead records of a key. Each half
// matches the predicate of a partial index (pending_idx, in Seq order, with
// the key tested on each entry; dead_key_idx), so neither reads delivered
// records however many are retained. There is no index of pending records
// by key (it would cost every Enqueue an index write), so a key's lookup
// reads the pending index up to its records: the backlog, at worst.
const inspectByKey = `
SELECT * FROM (
	(SELECT ` + recordColumns + `, dead_at, delivered_at FROM {table}
	 WHERE delivered_at IS NULL AND dead_at IS NULL AND key = $1::text
	 ORDER BY seq LIMIT $2::integer)
	UNION ALL
	(SELECT ` + recordColumns + `, dead_at, delivered_at FROM {table}
	 WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND key = $1::text
	 ORDER BY key, seq LIMIT $2::integer)
) r
ORDER BY seq
LIMIT $2::integer`

// Inspect finds the record p.ID, or the pending and dead records of p.Key.
// It implements [outbox.Inspector].
func (s *Store) Inspect(ctx context.Context, p outbox.InspectParams) ([]outbox.InspectedRecord, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	var rows pgx.Rows
	var err error
	if p.ID != "" {
		id, ok := normalizeID(p.ID)
		if !ok {
			return nil, ctx.Err()
		}
		rows, err = s.pool.Query(ctx, strings.ReplaceAll(inspectByID, "{table}", s.names.qualTab), id)
	} else {
		rows, err = s.pool.Query(ctx, strings.ReplaceAll(inspectByKey, "{table}", s.names.qualTab), p.Key, limit)
	}
	if err != nil {
		return nil, translate("inspect records", err)
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.InspectedRecord, error) {
		var r outbox.InspectedRecord
		var deadAt, deliveredAt *time.Time
		var err error
		r.Record, err = scanRecord(row, &deadAt, &deliveredAt)
		if deadAt != nil {
			r.DeadAt = deadAt.UTC()
		}
		if deliveredAt != nil {
			r.DeliveredAt = deliveredAt.UTC()
		}
		return r, err
	})
	if err != nil {
		return nil, translate("inspect records", err)
	}
	return recs, nil
}
