package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

// fillDelivered adds n delivered records spread over keys keys to the
// outbox of s, with one INSERT ... SELECT over a cross join of digits (no
// server-specific sequence table, no recursion limit), then ANALYZE TABLE.
func fillDelivered(t testing.TB, ctx context.Context, db *sql.DB, s *Store, n, keys int) {
	t.Helper()
	fill(t, ctx, db, s, n, keys, "UTC_TIMESTAMP(6)")
	analyze(t, ctx, db, s)
}

// fillPending adds n pending records spread over keys keys, and leaves the
// table's statistics as they were.
func fillPending(t testing.TB, ctx context.Context, db *sql.DB, s *Store, n, keys int) {
	t.Helper()
	fill(t, ctx, db, s, n, keys, "NULL")
}

func analyze(t testing.TB, ctx context.Context, db *sql.DB, s *Store) {
	t.Helper()
	if _, err := db.ExecContext(ctx, "ANALYZE TABLE "+s.table); err != nil {
		t.Fatal(err)
	}
}

func fill(t testing.TB, ctx context.Context, db *sql.DB, s *Store, n, keys int, deliveredAt string) {
	t.Helper()
	if n <= 0 {
		return
	}
	lanes, err := s.laneTotal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	digits := quote(s.cfg.Table + "_digits")
	keyLanes := quote(s.cfg.Table + "_key_lanes")
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS " + digits + " (d INT NOT NULL PRIMARY KEY)",
		"INSERT IGNORE INTO " + digits + " VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
		"CREATE TABLE IF NOT EXISTS " + keyLanes + " (k INT NOT NULL PRIMARY KEY, lane INT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// The lane of each key, from outbox.LaneOf.
	var vals []string
	for k := range keys {
		vals = append(vals, fmt.Sprintf("(%d,%d)", k, outbox.LaneOf(fmt.Sprint("key-", k), "", lanes)))
	}
	for start := 0; start < len(vals); start += 1000 {
		if _, err := db.ExecContext(ctx, "INSERT IGNORE INTO "+keyLanes+" VALUES "+strings.Join(vals[start:min(len(vals), start+1000)], ",")); err != nil {
			t.Fatal(err)
		}
	}
	var from, num []string
	for p, scale := 0, 1; scale < n; p, scale = p+1, scale*10 {
		alias := fmt.Sprintf("d%d", p)
		from = append(from, digits+" "+alias)
		num = append(num, fmt.Sprintf("%s.d*%d", alias, scale))
	}
	if len(from) == 0 {
		from, num = []string{digits + " d0"}, []string{"d0.d"}
	}
	i := "(" + strings.Join(num, " + ") + ")"
	// IDs ordered as UUIDv7 are: the time part of a fresh one, then the
	// record's number.
	id := "CONCAT('" + outbox.NewID()[:18] + "-8000-', LOWER(LPAD(HEX(" + i + "), 12, '0')))"
	q := "INSERT INTO " + s.table + " (id, lane, created_at, topic, msg_key, payload, delivered_at)" +
		" SELECT " + id + ", kl.lane, UTC_TIMESTAMP(6), 'bench', CONCAT('key-', kl.k), 'payload', " + deliveredAt +
		" FROM " + strings.Join(from, " CROSS JOIN ") + " JOIN " + keyLanes + " kl ON kl.k = " + i + " % " + fmt.Sprint(keys) +
		" WHERE " + i + " < " + fmt.Sprint(n) + " ORDER BY " + i
	if _, err := db.ExecContext(ctx, q); err != nil {
		t.Fatalf("fill %d records: %v", n, err)
	}
}
