package mysqlstore

import (
	"strings"
	"testing"
)

// TestServerNamesTheProduct: Server says MariaDB for a MariaDB server
// (VERSION() says which) and MySQL otherwise, with the version number.
func TestServerNamesTheProduct(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t, testDSN(t, nil))
	s, err := New(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	want := "MySQL "
	if strings.Contains(strings.ToLower(version), "mariadb") {
		want = "MariaDB "
	}
	got, err := s.Server(ctx)
	if err != nil || !strings.HasPrefix(got, want) || !strings.Contains(version, strings.TrimPrefix(got, want)) {
		t.Fatalf("Server = %q, %v; VERSION() is %q", got, err, version)
	}
}
