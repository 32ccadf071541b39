package pgstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// fill inserts n records straight into the table, fast (no Enqueue): keys
// cycle through keys distinct values ("" when keys is 0), payloads are
// size bytes, IDs are time-ordered like the UUIDv7 that Enqueue assigns.
// delivered records were delivered 30 minutes ago. The lane of a keyed
// record is its key's (outbox.LaneOf, as Enqueue computes it); records
// without key are spread over the lanes in turn.
func fill(t testing.TB, ctx context.Context, pool *pgxpool.Pool, s *Store, n, keys, size int, delivered bool) {
	t.Helper()
	deliveredAt := "NULL"
	if delivered {
		deliveredAt = "now() - interval '30 minutes'"
	}
	total, err := s.laneTotal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lanes := make([]int32, max(keys, 1))
	for k := range keys {
		lanes[k] = int32(outbox.LaneOf(fmt.Sprintf("key-%d", k), "", total))
	}
	_, err = pool.Exec(ctx, `
INSERT INTO `+s.Table()+` (id, lane, topic, key, payload, created_at, attempts, delivered_at)
SELECT (lpad(to_hex(ms.base + i), 12, '0') || '7' || substr(r.h, 1, 3) || '8' || substr(r.h, 4, 15))::uuid,
	CASE WHEN $2::integer = 0 THEN i % $5::integer ELSE ($4::integer[])[i % $2::integer + 1] END,
	'fill',
	CASE WHEN $2::integer = 0 THEN '' ELSE 'key-' || (i % $2::integer) END,
	convert_to(repeat('x', $3::integer), 'UTF8'),
	now() - interval '1 hour', 0, `+deliveredAt+`
FROM generate_series(1, $1::integer) AS i,
	LATERAL (SELECT md5(random()::text || i) AS h) AS r,
	(SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 3600000 AS base) AS ms
ORDER BY i`, n, keys, size, lanes, total)
	if err != nil {
		t.Fatalf("filling %s with %d records: %v", s.Table(), n, err)
	}
}

// analyze refreshes the planner's statistics of the table.
func analyze(t testing.TB, ctx context.Context, pool *pgxpool.Pool, s *Store) {
	t.Helper()
	if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+s.Table()); err != nil {
		t.Fatal(err)
	}
}
