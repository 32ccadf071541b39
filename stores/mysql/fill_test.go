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
// server-specific sequence table, no recursion limit).
func fillDelivered(t testing.TB, ctx context.Context, db *sql.DB, s *Store, n, keys int) {
	t.Helper()
	fill(t, ctx, db, s, n, keys, 2, "UTC_TIMESTAMP(6)")
}

// fillPending adds n pending records spread over keys keys.
func fillPending(t testing.TB, ctx context.Context, db *sql.DB, s *Store, n, keys int) {
	t.Helper()
	fill(t, ctx, db, s, n, keys, 0, "NULL")
}

func fill(t testing.TB, ctx context.Context, db *sql.DB, s *Store, n, keys, state int, deliveredAt string) {
	t.Helper()
	if n <= 0 {
		return
	}
	digits := s.cfg.Table + "_digits"
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS " + quote(digits) + " (d INT NOT NULL PRIMARY KEY)",
		"INSERT IGNORE INTO " + quote(digits) + " VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var from, num []string
	for p, scale := 0, 1; scale < n; p, scale = p+1, scale*10 {
		alias := fmt.Sprintf("d%d", p)
		from = append(from, quote(digits)+" "+alias)
		num = append(num, fmt.Sprintf("%s.d*%d", alias, scale))
	}
	if len(from) == 0 {
		from, num = []string{quote(digits) + " d0"}, []string{"d0.d"}
	}
	i := strings.Join(num, " + ")
	// IDs ordered as UUIDv7 are: the time part of a fresh one, then the
	// record's number.
	id := "CONCAT('" + outbox.NewID()[:18] + "-8000-', LOWER(LPAD(HEX(" + i + "), 12, '0')))"
	key := "CONCAT('key-', (" + i + ") % " + fmt.Sprint(keys) + ")"
	orderKey := key
	if state == 2 {
		orderKey = "NULL"
	}
	q := "INSERT INTO " + s.table + " (id, created_at, topic, msg_key, order_key, payload, state, delivered_at)" +
		" SELECT " + id + ", UTC_TIMESTAMP(6), 'bench', " + key + ", " + orderKey + ", 'payload', " + fmt.Sprint(state) + ", " + deliveredAt +
		" FROM " + strings.Join(from, " CROSS JOIN ") + " WHERE " + i + " < " + fmt.Sprint(n)
	if _, err := db.ExecContext(ctx, q); err != nil {
		t.Fatalf("fill %d records: %v", n, err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE TABLE "+s.table); err != nil {
		t.Fatal(err)
	}
}
