package cli_test

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
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

// TestMigrateTail: migrate --tail creates the replication slot of the
// log-tailing mode and says so by name, then says that it exists;
// --drop-tail refuses without a terminal or --yes and leaves the slot, drops
// it with --yes and says so, then finds nothing to drop.
func TestMigrateTail(t *testing.T) {
	t.Parallel()
	url, schema := pgserver.Schema(t)
	st, err := pgstore.New(storePool(t, url), pgstore.Config{Schema: schema, Tail: true})
	if err != nil {
		t.Fatal(err)
	}
	slot := st.Slot()
	t.Cleanup(func() { // whatever the test left: slots retain WAL
		if err := st.DropTail(context.Background()); err != nil {
			t.Errorf("DropTail: %v", err)
		}
	})
	exists := func() bool {
		t.Helper()
		var ok bool
		err := storePool(t, url).QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot).Scan(&ok)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	env := map[string]string{"OUTBOX_STORE_URL": url, "OUTBOX_SCHEMA": schema}

	stdout, stderr, code := run(t, env, "", false, "migrate", "--tail")
	if want := "log tailing: created replication slot " + slot + " and publication " + slot; code != 0 || !strings.Contains(stdout, want) {
		t.Fatalf("migrate --tail: exit %d, %q (%s); want %q", code, stdout, stderr, want)
	}
	if !exists() {
		t.Fatalf("migrate --tail said it created slot %s, which does not exist", slot)
	}
	env["OUTBOX_TAIL"] = "true" // the environment sets it too
	stdout, stderr, code = run(t, env, "", false, "migrate")
	if want := "log tailing: replication slot " + slot + " and publication " + slot + " already exist"; code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("migrate with OUTBOX_TAIL: exit %d, %q (%s); want %q", code, stdout, stderr, want)
	}
	delete(env, "OUTBOX_TAIL")
	stdout, _, code = run(t, env, "", false, "migrate")
	if code != 0 || strings.Contains(stdout, "tailing") {
		t.Errorf("migrate without --tail: exit %d, %q; want nothing said of log tailing", code, stdout)
	}

	_, stderr, code = run(t, env, "", false, "migrate", "--tail", "--drop-tail", "--yes")
	if code != app.ExitUsage || !strings.Contains(stderr, "--tail and --drop-tail: give one") {
		t.Errorf("migrate --tail --drop-tail: exit %d, %q; want a usage error naming both", code, stderr)
	}
	_, stderr, code = run(t, env, "", false, "migrate", "--drop-tail")
	if code == 0 || !strings.Contains(stderr, "Drop the replication slot "+slot) || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("migrate --drop-tail without a terminal: exit %d, %q; want a refusal that asks for --yes", code, stderr)
	}
	_, stderr, code = run(t, env, "no\n", true, "migrate", "--drop-tail")
	if code == 0 || !strings.Contains(stderr, "nothing was changed") {
		t.Errorf("migrate --drop-tail answered no: exit %d, %q; want nothing changed", code, stderr)
	}
	if !exists() {
		t.Fatal("migrate --drop-tail dropped the slot without a confirmation")
	}
	stdout, stderr, code = run(t, env, "y\n", true, "migrate", "--drop-tail")
	if want := "dropped replication slot " + slot + " and publication " + slot; code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("migrate --drop-tail answered yes: exit %d, %q (%s); want %q", code, stdout, stderr, want)
	}
	if exists() {
		t.Errorf("migrate --drop-tail said it dropped slot %s, which still exists", slot)
	}
	stdout, stderr, code = run(t, env, "", false, "migrate", "--drop-tail", "--yes")
	if want := "no replication slot " + slot + ": nothing to drop"; code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("migrate --drop-tail again: exit %d, %q (%s); want %q", code, stdout, stderr, want)
	}
	// A tailing relay without its slot says what to run, at once.
	_, stderr, code = run(t, env, "", false, "relay", "--tail", "--broker", "nats://127.0.0.1:1")
	if want := "--tail: the replication slot " + slot + " does not exist"; code != app.ExitError || !strings.Contains(stderr, want) || !strings.Contains(stderr, "outbox migrate --tail") {
		t.Errorf("relay --tail without its slot: exit %d, %q; want exit %d and %q with the migrate command", code, stderr, app.ExitError, want)
	}
}

// TestTailNeedsPostgres: --tail (and --drop-tail) with a store other than
// PostgreSQL is a usage error that names the flag or variable that set it.
func TestTailNeedsPostgres(t *testing.T) {
	t.Parallel()
	store := "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	for _, c := range []struct {
		env  map[string]string
		args []string
		flag string
	}{
		{nil, []string{"migrate", "--store", store, "--tail"}, "--tail"},
		{nil, []string{"relay", "--store", store, "--broker", "nats://127.0.0.1:1", "--tail"}, "--tail"},
		{map[string]string{"OUTBOX_TAIL": "1"}, []string{"relay", "--store", "mysql://u@127.0.0.1:1/app", "--broker", "nats://127.0.0.1:1"}, "OUTBOX_TAIL"},
		{nil, []string{"migrate", "--store", store, "--drop-tail", "--yes"}, "--drop-tail"},
	} {
		_, stderr, code := run(t, c.env, "", false, c.args...)
		want := c.flag + ": only PostgreSQL stores can tail their log"
		if code != app.ExitUsage || !strings.Contains(stderr, want) {
			t.Errorf("%v: exit %d, %q; want exit %d and %q", c.args, code, stderr, app.ExitUsage, want)
		}
	}
}
