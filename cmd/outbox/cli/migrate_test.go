package cli_test

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
)

// TestMigrateSaysWhatItDid: on every store, the first migrate says from
// which schema version to which it migrated (MongoDB: what it created) and
// creates the lanes that the URL's lanes=8 asks for; the second says that
// the schema was already up to date, and that the outbox keeps its 8 lanes
// when lanes=16 asks for others; the third, without lanes=, says nothing of
// lanes.
func TestMigrateSaysWhatItDid(t *testing.T) {
	t.Parallel()
	versioned := []string{"to schema version 1 (from version 0: no tables yet), 8 lanes", "already up to date (schema version 1, 8 lanes)",
		"already up to date (schema version 1)\n"}
	for _, c := range []struct {
		name  string
		env   func(t *testing.T) map[string]string
		wants []string
	}{
		{"postgres", func(t *testing.T) map[string]string {
			url, schema := pgserver.Schema(t)
			return map[string]string{"OUTBOX_STORE_URL": url, "OUTBOX_SCHEMA": schema}
		}, versioned},
		{"mysql", func(t *testing.T) map[string]string {
			dsn, _ := mysqlserver.Database(t)
			return map[string]string{"OUTBOX_STORE_URL": dsn}
		}, versioned},
		{"sqlite", func(t *testing.T) map[string]string {
			return map[string]string{"OUTBOX_STORE_URL": "sqlite://" + filepath.Join(t.TempDir(), "app.db")}
		}, versioned},
		{"mongodb", func(t *testing.T) map[string]string {
			raw, name := mongoserver.Database(t)
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			u.Path = "/" + name
			return map[string]string{"OUTBOX_STORE_URL": u.String()}
		}, []string{"created collection outbox, ", "already up to date (every collection and index exists, 8 lanes)",
			"already up to date (every collection and index exists)\n"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := c.env(t)
			plain := env["OUTBOX_STORE_URL"]
			for i, lanes := range []string{"8", "16", ""} {
				env["OUTBOX_STORE_URL"] = withLanes(plain, lanes)
				stdout, stderr, code := run(t, env, "", false, "migrate")
				want := c.wants[i]
				if code != 0 || !strings.Contains(stdout, want) || strings.Contains(stdout, "migrated") != (i == 0) {
					t.Errorf("migrate %d (lanes=%s): exit %d, %q (%s); want %q", i+1, lanes, code, stdout, stderr, want)
				}
				if i == 0 && !strings.HasSuffix(stdout, ", 8 lanes\n") {
					t.Errorf("migrate 1 (lanes=8) printed %q; want it to end with the lane count", stdout)
				}
				keeps := "outbox migrate: the outbox keeps the 8 lanes it was created with; lanes=16 applies only when migrate creates the outbox"
				if strings.Contains(stderr, keeps) != (lanes == "16") {
					t.Errorf("migrate %d (lanes=%s): stderr %q; want %q only for lanes=16", i+1, lanes, stderr, keeps)
				}
			}
		})
	}
}

// withLanes adds lanes=n to a store URL's query (nothing when n is empty).
func withLanes(raw, n string) string {
	switch {
	case n == "":
		return raw
	case strings.Contains(raw, "?"):
		return raw + "&lanes=" + n
	}
	return raw + "?lanes=" + n
}
