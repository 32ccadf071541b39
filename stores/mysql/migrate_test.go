package mysqlstore

import "testing"

// TestSchemaVersion: 0 before Migrate (no migrations table), the latest
// version after it.
func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t, testDSN(t, nil))
	s, err := New(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(ctx); v != 0 || err != nil {
		t.Fatalf("SchemaVersion before Migrate = %d, %v; want 0, nil", v, err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(ctx); v != LatestSchemaVersion() || v < 1 || err != nil {
		t.Fatalf("SchemaVersion after Migrate = %d, %v; want %d", v, err, LatestSchemaVersion())
	}
}
