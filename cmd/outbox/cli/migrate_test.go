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
// which schema version to which it migrated (MongoDB: what it created),
// and the second that the schema was already up to date.
func TestMigrateSaysWhatItDid(t *testing.T) {
	t.Parallel()
	versioned := []string{"to schema version 1 (from version 0: no tables yet)", "already up to date (schema version 1)"}
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
		}, []string{"created collection outbox, collection outbox.keys, collection outbox.locks", "already up to date (every collection and index exists)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := c.env(t)
			for i, want := range c.wants {
				stdout, stderr, code := run(t, env, "", false, "migrate")
				if code != 0 || !strings.Contains(stdout, want) || strings.Contains(stdout, "migrated") != (i == 0) {
					t.Errorf("migrate %d: exit %d, %q (%s); want %q", i+1, code, stdout, stderr, want)
				}
			}
		})
	}
}
