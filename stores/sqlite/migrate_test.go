package sqlitestore_test

import (
	"path/filepath"
	"testing"

	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// TestSchemaVersion: 0 before Migrate (no migrations table), the latest
// version after it, for each table of one database.
func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t, filepath.Join(t.TempDir(), "app.db"))
	orders, err := sqlitestore.New(db, sqlitestore.Config{Table: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	users, err := sqlitestore.New(db, sqlitestore.Config{Table: "users"})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := orders.SchemaVersion(ctx); v != 0 || err != nil {
		t.Fatalf("SchemaVersion before Migrate = %d, %v; want 0, nil", v, err)
	}
	if err := orders.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := orders.SchemaVersion(ctx); v != sqlitestore.LatestSchemaVersion() || v < 1 || err != nil {
		t.Fatalf("SchemaVersion after Migrate = %d, %v; want %d", v, err, sqlitestore.LatestSchemaVersion())
	}
	if v, err := users.SchemaVersion(ctx); v != 0 || err != nil {
		t.Fatalf("SchemaVersion of another table, not migrated = %d, %v; want 0, nil", v, err)
	}
}
