package sqlitestore

import (
	"context"
	"database/sql"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

var _ outbox.Inspector = (*Store)(nil)

const inspectColumns = `seq, id, topic, key, lane, payload, headers, created_at, attempts, last_error, not_before, dead_at, delivered_at`

// Inspect implements [outbox.Inspector]: a record by its ID (the unique
// id index), or the pending and dead records of a key, each half through
// its partial index (pending, dead_key), so that delivered records kept by
// retention are never read. There is no index of pending records by key
// (every Enqueue would pay for it), so a key's lookup walks the pending
// index: the backlog, at worst.
func (s *Store) Inspect(ctx context.Context, p outbox.InspectParams) ([]outbox.InspectedRecord, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	r := strings.NewReplacer("{table}", quote(s.table), "{pending}", quote(s.table+"_pending"), "{dead_key}", quote(s.table+"_dead_key"))
	var rows *sql.Rows
	var err error
	if p.ID != "" {
		rows, err = s.db.QueryContext(ctx, r.Replace(`SELECT `+inspectColumns+` FROM {table} WHERE id = ?1`), strings.ToLower(p.ID))
	} else {
		rows, err = s.db.QueryContext(ctx, r.Replace(`
SELECT * FROM (
	SELECT `+inspectColumns+` FROM {table} INDEXED BY {pending}
	WHERE delivered_at IS NULL AND dead_at IS NULL AND key = ?1
	UNION ALL
	SELECT `+inspectColumns+` FROM {table} INDEXED BY {dead_key}
	WHERE dead_at IS NOT NULL AND key = ?1
) ORDER BY seq LIMIT ?2`), p.Key, limit)
	}
	if err != nil {
		return nil, translate("Inspect", err)
	}
	defer rows.Close()
	var out []outbox.InspectedRecord
	for rows.Next() {
		var rec outbox.InspectedRecord
		var headers, lastError sql.NullString
		var created int64
		var notBefore, deadAt, deliveredAt sql.NullInt64
		if err := rows.Scan(&rec.Seq, &rec.ID, &rec.Topic, &rec.Key, &rec.Lane, &rec.Payload, &headers, &created, &rec.Attempts, &lastError, &notBefore, &deadAt, &deliveredAt); err != nil {
			return nil, translate("Inspect", err)
		}
		if rec.Headers, err = decodeHeaders(headers); err != nil {
			return nil, err
		}
		rec.CreatedAt = micros(created)
		rec.LastError = lastError.String
		if notBefore.Valid {
			rec.NotBefore = micros(notBefore.Int64)
		}
		if deadAt.Valid {
			rec.DeadAt = micros(deadAt.Int64)
		}
		if deliveredAt.Valid {
			rec.DeliveredAt = micros(deliveredAt.Int64)
		}
		out = append(out, rec)
	}
	return out, translate("Inspect", rows.Err())
}
