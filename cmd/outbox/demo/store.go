package demo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	outbox "github.com/txoutbox/txoutbox/core"
)

// store is the database side of a run: the outbox the relays read, and the
// service's transaction that updates a user and enqueues its event.
type store struct {
	// display describes the database for the header.
	display string
	// outbox is the store adapter, for relays in this process.
	outbox outbox.Store
	// url and relayArgs are how a relay process reaches the same outbox:
	// url goes in OUTBOX_STORE_URL (it may hold a password), relayArgs
	// (--table, --schema) on the command line.
	url       string
	relayArgs []string
	// update runs one transaction of the service: set the user's name and
	// enqueue msg. A *commitError means the outcome of Commit is unknown;
	// any other error means the transaction rolled back.
	update func(ctx context.Context, userID, name string, msg outbox.Message) error
	// close drops what the demo created on a real server and closes the
	// connections.
	close func(ctx context.Context) error
}

// commitError is a failed Commit: the transaction may or may not have
// committed.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// storeExamples are shown with a --store that cannot be used.
const storeExamples = `use "sqlite" (embedded), postgres://user:password@localhost:5432/app, mysql://user:password@localhost:3306/app or sqlite:///path/to/app.db`

// openStore opens the database cfg.Store names and prepares the demo's
// tables in it: an outbox and a users table with one row per key.
func openStore(ctx context.Context, cfg Config, dir, run string, keys []string) (*store, error) {
	raw := cfg.Store
	kind, err := storeKind(raw)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "postgres":
		return openPostgres(ctx, raw, "outbox_demo_"+run, keys)
	case "mysql":
		return openMySQL(ctx, raw, demoTable(run), keys)
	}
	if raw == EmbeddedSQLite {
		return openSQLite(ctx, filepath.Join(dir, "demo.db"), "", keys)
	}
	path, err := sqlitePath(raw)
	if err != nil {
		return nil, err
	}
	return openSQLite(ctx, path, demoTable(run), keys)
}

// storeKind tells the database a --store names: "sqlite", "postgres" or
// "mysql".
func storeKind(raw string) (string, error) {
	scheme, _, hasScheme := strings.Cut(raw, ":")
	if !hasScheme && raw == EmbeddedSQLite {
		return EmbeddedSQLite, nil
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3":
		if hasScheme {
			return EmbeddedSQLite, nil
		}
	case "postgres", "postgresql":
		return "postgres", nil
	case "mysql", "mariadb":
		return "mysql", nil
	case "mongodb", "mongodb+srv":
		return "", invalid("--store: the demo does not run on MongoDB yet (its transactions need a replica set); %s", storeExamples)
	}
	if strings.Contains(raw, "@tcp(") || strings.Contains(raw, "@unix(") {
		return "mysql", nil // a go-sql-driver DSN
	}
	return "", invalid("--store %q: unknown database; %s", backend.Redact(raw), storeExamples)
}

// demoTable is the outbox table of a run on a database of the user's.
func demoTable(run string) string { return "outbox_demo_" + run }

// sqlitePath reads sqlite:///absolute/path.db or sqlite:relative/path.db.
func sqlitePath(raw string) (string, error) {
	_, rest, _ := strings.Cut(raw, ":")
	if strings.Contains(rest, "?") {
		return "", invalid("--store %q: parameters are not supported", raw)
	}
	if strings.HasPrefix(rest, "///") {
		rest = rest[2:]
	} else if strings.HasPrefix(rest, "//") {
		return "", invalid("--store %q: write sqlite:///absolute/path.db (three slashes) or sqlite:relative/path.db", raw)
	}
	if rest == "" {
		return "", invalid("--store %q: no database file", raw)
	}
	abs, err := filepath.Abs(rest)
	if err != nil {
		return "", invalid("--store %q: %v", raw, err)
	}
	return abs, nil
}

// sqliteURL is the sqlite: URL of an absolute path, for relay processes.
func sqliteURL(path string) string {
	path = filepath.ToSlash(path)
	if strings.HasPrefix(path, "/") {
		return "sqlite://" + path
	}
	return "sqlite:" + path
}

// joinErrors closes what was opened when a later step fails.
func joinErrors(err error, closers ...func() error) error {
	errs := []error{err}
	for _, c := range closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// userName is the name the service gives a user at one of its versions.
func userName(i, version int) string {
	first := []string{"Ada", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia",
		"Alan", "Margaret", "Dennis", "Sophie", "Tony", "Hedy", "Leslie", "Katherine"}
	return fmt.Sprintf("%s #%d", first[i%len(first)], version)
}
