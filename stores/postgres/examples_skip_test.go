package pgstore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
)

// exampleURLVar is the variable the examples read their server from, as a
// service would: they are meant to be copied, so they call no test helper.
const exampleURLVar = "DATABASE_URL"

// prepareExamples gives the examples a database of their own on the test
// server, in DATABASE_URL, and returns what drops it (TestMain calls it
// after servers.Main, when a throwaway server has already taken its
// databases away). Examples print what
// they did against a real server and cannot skip themselves, so when the
// servers package will find no PostgreSQL (no URL in the environment, no
// local binaries, no Docker) it skips them instead, by setting -test.skip.
// Tests skip on their own then. Under OUTBOX_TEST_REQUIRE=postgres nothing
// is skipped, so CI fails instead.
//
// It mirrors the discovery order of package pgserver, which offers no way to
// ask without a testing.TB.
func prepareExamples() (cleanup func()) {
	flag.Parse()
	if run := flag.Lookup("test.run"); run != nil && run.Value.String() != "" {
		pattern := run.Value.String()
		if re, err := regexp.Compile(pattern); err == nil && !re.MatchString("Example") && !strings.Contains(pattern, "Example") {
			return func() {} // no example will run
		}
	}
	if !postgresFindable() {
		if skip := flag.Lookup("test.skip"); skip != nil && skip.Value.String() == "" {
			_ = skip.Value.Set("^Example")
			fmt.Fprintln(os.Stderr, "pgstore: no PostgreSQL server: skipping the examples")
		}
		return func() {}
	}
	t := &exampleT{name: "Examples"}
	defer func() {
		if r := recover(); r != nil { // exampleT turns failures into panics
			fmt.Fprintln(os.Stderr, "pgstore: setting up the examples:", r)
			t.cleanup()
			os.Exit(1)
		}
	}()
	base := pgserver.URL(t)
	name := strings.ToLower(servers.Name(t, "pgstore_examples"))
	ident := pgx.Identifier{name}.Sanitize()
	if err := execOn(base, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// A throwaway server is gone by now, and its database with it.
		var gone *pgconn.ConnectError
		if err := execOn(base, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil && !errors.As(err, &gone) {
			fmt.Fprintf(os.Stderr, "pgstore: drop database %s: %v\n", name, err)
		}
	})
	u, err := withDatabase(base, name)
	if err != nil {
		t.Fatal(err)
	}
	os.Setenv(exampleURLVar, u)
	return t.cleanup
}

// postgresFindable says whether package pgserver will find a server.
func postgresFindable() bool {
	if os.Getenv(servers.EnvPostgresURL) != "" || servers.Required(servers.Postgres) {
		return true
	}
	dirs := []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin"}
	if _, err := servers.FindBinary([]string{"initdb"}, dirs...); err == nil {
		return true
	}
	_, err := servers.Docker()
	return err == nil
}

// withDatabase returns connection string s (a URL or key=value pairs)
// pointing at database name instead.
func withDatabase(s, name string) (string, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return s + " dbname=" + name, nil
}

// execOn runs one statement on a connection of its own.
func execOn(connString, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// exampleT is the part of testing.TB that pgserver and servers.Name use.
// Calling any other method panics (the embedded interface is nil), and so
// does a failure.
type exampleT struct {
	testing.TB
	name     string
	cleanups []func()
}

func (t *exampleT) Name() string              { return t.name }
func (t *exampleT) Helper()                   {}
func (t *exampleT) Logf(string, ...any)       {}
func (t *exampleT) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *exampleT) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *exampleT) Fatal(a ...any)            { panic(fmt.Sprint(a...)) }
func (t *exampleT) Skip(a ...any)             { panic(fmt.Sprint(a...)) }
func (t *exampleT) Skipf(f string, a ...any)  { panic(fmt.Sprintf(f, a...)) }

func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
