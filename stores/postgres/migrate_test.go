package pgstore

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Migrate creates a missing schema; several stores (different tables of one
// new schema, and the same table twice) migrating at once all succeed, and
// record the version once per table.
func TestMigrateConcurrentTablesInNewSchema(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, parent := pgserver.Schema(t)
	pool := pgserver.Pool(t)
	schema := parent + "_new" // does not exist yet
	t.Cleanup(func() { _, _ = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE") })

	var stores []*Store
	for _, table := range []string{"orders_outbox", "Billing_Outbox", "orders_outbox"} {
		s, err := New(pool, Config{Schema: schema, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Go(func() {
			if err := s.Migrate(ctx); err != nil {
				t.Errorf("Migrate %s: %v", s.Table(), err)
			}
		})
	}
	wg.Wait()
	for _, s := range stores {
		if v, err := s.SchemaVersion(ctx); err != nil || v != LatestSchemaVersion() {
			t.Fatalf("SchemaVersion of %s = %d, %v; want %d", s.Table(), v, err, LatestSchemaVersion())
		}
		var rows int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+s.names.qualVer).Scan(&rows); err != nil || rows != LatestSchemaVersion() {
			t.Fatalf("%s records %d versions (%v); want one row per migration", s.names.qualVer, rows, err)
		}
	}
	// The tables are apart: a message in one is not in the other.
	if err := enqueueCommitted(ctx, pool, stores[0], outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if recs := readAll(t, ctx, stores[1], 10); len(recs) != 0 {
		t.Fatalf("read %d records from the other table", len(recs))
	}
	if recs := readAll(t, ctx, stores[2], 10); len(recs) != 1 {
		t.Fatalf("read %d records from the same table, want 1", len(recs))
	}
}
