package cli_test

import (
	"database/sql"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
)

// pgURL returns the test server's URL changed by edit, and its host:port.
func pgURL(t *testing.T, edit func(u *url.URL)) (raw, addr string) {
	t.Helper()
	u, err := url.Parse(pgserver.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(u)
	}
	return u.String(), u.Host
}

// mysqlDSN returns a DSN of the test server changed by edit, and its address.
func mysqlDSN(t *testing.T, edit func(c *mysql.Config)) (dsn, addr string) {
	t.Helper()
	cfg, err := mysql.ParseDSN(mysqlserver.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	return cfg.FormatDSN(), cfg.Addr
}

// serverFamily returns "MariaDB" or "MySQL": what the server at dsn is,
// as VERSION() says.
func serverFamily(t *testing.T, dsn string) string {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	flavor, _, _, err := mysqlserver.Version(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if flavor == "mariadb" {
		return "MariaDB"
	}
	return "MySQL"
}

// closedPort returns 127.0.0.1:port where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	port, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// TestFailuresNameTheFix runs commands against the real servers with the
// mistakes a new user makes — an unknown role or user, a database or table
// that does not exist, a port where nothing listens — and checks the one
// line the CLI prints for each: it names the server and the flag, variable
// or command that fixes it, shows no driver error and no password, and
// does not stutter "outbox: outbox:". One-shot commands fail at once on a
// refusal; they give up on an unreachable server after --wait.
func TestFailuresNameTheFix(t *testing.T) {
	t.Parallel()
	nouser := servers.Name(t, "nouser")
	nodb := servers.Name(t, "nodb")
	noschema := servers.Name(t, "noschema")
	notable := servers.Name(t, "notable")

	pgNoRole, pgAddr := pgURL(t, func(u *url.URL) { u.User = url.UserPassword(nouser, "s3cret") })
	pgNoDB, _ := pgURL(t, func(u *url.URL) { u.Path = "/" + nodb })
	pg, _ := pgURL(t, nil)
	pgDB := strings.TrimPrefix(mustParse(t, pg).Path, "/")
	myNoUser, myAddr := mysqlDSN(t, func(c *mysql.Config) { c.User, c.Passwd = nouser, "s3cret" })
	myNoDB, _ := mysqlDSN(t, func(c *mysql.Config) { c.DBName = nodb })
	my, name := mysqlserver.Database(t)
	family := serverFamily(t, my)
	closed := closedPort(t)
	sqliteDir := filepath.Join(t.TempDir(), "missing")

	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		want  []string // in the last line, which is the CLI's message
		lines int      // lines on stderr; 0: any (the retries log theirs)
	}{
		{"postgres unknown role", nil, []string{"status", "--store", pgNoRole},
			[]string{`PostgreSQL at ` + pgAddr + ` refused user "` + nouser + `" (role "` + nouser + `" does not exist): check the user and password in --store (or OUTBOX_STORE_URL)`}, 1},
		{"postgres unknown role from the environment", map[string]string{"OUTBOX_STORE_URL": pgNoRole}, []string{"migrate"},
			[]string{`refused user "` + nouser + `"`, "check the user and password in OUTBOX_STORE_URL"}, 1},
		{"postgres database missing", nil, []string{"dead", "list", "--store", pgNoDB},
			[]string{`database "` + nodb + `" does not exist on PostgreSQL at ` + pgAddr + `: create it, or fix the database name in --store (or OUTBOX_STORE_URL)`}, 1},
		{"postgres schema missing", nil, []string{"status", "--store", pg, "--schema", noschema},
			[]string{`the outbox table ` + noschema + `.outbox does not exist in database "` + pgDB + `" on PostgreSQL at ` + pgAddr,
				"create it with `outbox migrate --store ", " --schema " + noschema + "`"}, 1},
		{"postgres schema missing from the environment", map[string]string{"OUTBOX_STORE_URL": pg, "OUTBOX_SCHEMA": noschema}, []string{"dead", "list"},
			[]string{"the outbox table " + noschema + ".outbox does not exist", "create it with `outbox migrate` (with the same OUTBOX_STORE_URL and OUTBOX_SCHEMA)"}, 1},
		{"mysql access denied", nil, []string{"status", "--store", myNoUser},
			[]string{`MySQL or MariaDB at ` + myAddr + ` refused user "` + nouser + `" (Access denied for user '` + nouser + `'@`, "check the user and password in --store (or OUTBOX_STORE_URL)"}, 1},
		{"mysql unknown database", nil, []string{"migrate", "--store", myNoDB},
			[]string{`database "` + nodb + `" does not exist on MySQL or MariaDB at ` + myAddr + `: create it, or fix the database name in --store (or OUTBOX_STORE_URL)`}, 1},
		{"mysql table missing", nil, []string{"dead", "list", "--store", my, "--table", notable},
			[]string{`the outbox table ` + notable + ` does not exist in database "` + name + `" on ` + family + ` at ` + myAddr, "create it with `outbox migrate --store ", "--table " + notable + "`"}, 1},
		{"nothing listens, once", nil, []string{"status", "--store", "postgres://app:s3cret@" + closed + "/app", "--wait", "0"},
			[]string{"nothing answers at " + closed + " (PostgreSQL: connection refused): check the host and port in --store (or OUTBOX_STORE_URL), and that the server is running"}, 1},
		{"nothing listens, for --wait", nil, []string{"migrate", "--store", "mysql://root:s3cret@" + closed + "/app", "--wait", "600ms"},
			[]string{"nothing answers at " + closed + " (MySQL or MariaDB: connection refused); gave up after ", " (--wait 600ms): check the host and port in --store (or OUTBOX_STORE_URL)"}, 0},
		{"sqlite directory missing", nil, []string{"migrate", "--store", "sqlite://" + filepath.Join(sqliteDir, "app.db")},
			[]string{"the directory of the SQLite database " + filepath.Join(sqliteDir, "app.db") + " does not exist: create it, or fix the path in --store (or OUTBOX_STORE_URL)"}, 1},
		{"relay on a schema that is missing", nil, []string{"relay", "--store", pg, "--schema", noschema, "--broker", "kafka://" + closed},
			[]string{"the outbox table " + noschema + ".outbox does not exist", "create it with `outbox migrate --store ", "--schema " + noschema + "`"}, 0},
		{"relay refused by the store", nil, []string{"relay", "--store", pgNoRole, "--broker", "kafka://" + closed},
			[]string{`PostgreSQL at ` + pgAddr + ` refused user "` + nouser + `"`, "check the user and password in --store (or OUTBOX_STORE_URL)"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := run(t, tt.env, "", false, tt.args...)
			if code != app.ExitError {
				t.Errorf("exit code %d, want %d", code, app.ExitError)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "outbox: ") {
				t.Fatalf("the last line of stderr is not the CLI's message:\n%s", stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("the message\n%s\ndoes not contain\n%s", last, w)
				}
			}
			if tt.lines > 0 && len(lines) != tt.lines {
				t.Errorf("stderr has %d lines, want %d:\n%s", len(lines), tt.lines, stderr)
			}
			for _, bad := range []string{"outbox: outbox:", "s3cret"} {
				if strings.Contains(stderr, bad) {
					t.Errorf("stderr contains %q:\n%s", bad, stderr)
				}
			}
			for _, bad := range []string{"SQLSTATE", "Error 10", "backend unavailable", "Migrate"} { // the drivers' and Go's words
				if strings.Contains(last, bad) {
					t.Errorf("the message contains %q:\n%s", bad, last)
				}
			}
		})
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
