package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// sentinels are the core errors translate adds; each error matches at most one.
var sentinels = []error{outbox.ErrSchemaMissing, outbox.ErrDatabaseMissing, outbox.ErrAccessDenied, outbox.ErrUnavailable}

// checkSentinel reports an error unless err matches want and no other
// sentinel, and keeps the server's error.
func checkSentinel(t *testing.T, what string, err, want error) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) != (s == want) {
			t.Errorf("%s = %v; errors.Is(%v) = %v, want only %v", what, err, s, errors.Is(err, s), want)
		}
	}
	if _, ok := sqlState(err); !ok {
		t.Errorf("%s = %v, which lost the server's error", what, err)
	}
}

// TestTranslateSQLState: the SQLSTATEs that need an operator map to their
// sentinel; others add none.
func TestTranslateSQLState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code string
		want error
	}{
		{"42P01", outbox.ErrSchemaMissing}, // undefined_table
		{"3F000", outbox.ErrSchemaMissing}, // invalid_schema_name
		{"3D000", outbox.ErrDatabaseMissing},
		{"28000", outbox.ErrAccessDenied}, // invalid_authorization_specification: unknown role, pg_hba
		{"28P01", outbox.ErrAccessDenied}, // invalid_password
		{"42501", outbox.ErrAccessDenied}, // insufficient_privilege
		{"08006", outbox.ErrUnavailable},
		{"57P03", outbox.ErrUnavailable},
		{"23505", nil},
		{"42601", nil}, // syntax_error
	}
	for _, tt := range tests {
		err := translate("stats", &pgconn.PgError{Code: tt.code, Message: "m"})
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == tt.want) {
				t.Errorf("SQLSTATE %s: %v; errors.Is(%v) = %v, want only %v", tt.code, err, s, errors.Is(err, s), tt.want)
			}
		}
	}
}

// withURL returns the test server's URL changed by edit.
func withURL(t *testing.T, edit func(u *url.URL)) string {
	t.Helper()
	u, err := url.Parse(pgserver.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	edit(u)
	return u.String()
}

// storeAt opens a store on rawURL without connecting.
func storeAt(t *testing.T, rawURL string, cfg Config) *Store {
	t.Helper()
	pcfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), pcfg) // connects lazily
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAccessAndDatabaseErrorsAreTranslated: against the real server, an
// unknown role and a role without privileges are ErrAccessDenied and a
// database that does not exist is ErrDatabaseMissing, from every operation
// the CLI runs; none of them is ErrUnavailable, which would be retried.
func TestAccessAndDatabaseErrorsAreTranslated(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, schema := pgserver.Schema(t)

	// A role that may log in but has no privilege on the test's schema.
	pool := pgserver.Pool(t)
	role := servers.Name(t, "noaccess")
	if _, err := pool.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	migrated, err := New(pool, Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := migrated.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		url  string
		want error
	}{
		{"unknown role", withURL(t, func(u *url.URL) { u.User = url.User(servers.Name(t, "nouser")) }), outbox.ErrAccessDenied},
		{"no privilege", withURL(t, func(u *url.URL) { u.User = url.User(role) }), outbox.ErrAccessDenied},
		{"unknown database", withURL(t, func(u *url.URL) { u.Path = "/" + servers.Name(t, "nodb") }), outbox.ErrDatabaseMissing},
	}
	for _, tt := range tests {
		s := storeAt(t, tt.url, Config{Schema: schema})
		_, readErr := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1})
		_, syncErr := s.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Minute})
		_, statsErr := s.Stats(ctx)
		_, listErr := s.ListDead(ctx, outbox.ListDeadParams{Limit: 1})
		ops := map[string]error{"Read": readErr, "SyncLanes": syncErr, "Stats": statsErr, "ListDead": listErr, "Migrate": s.Migrate(ctx)}
		if tt.name != "no privilege" { // the role may connect: Ping passes
			ops["Ping"] = s.Ping(ctx)
		}
		for op, err := range ops {
			checkSentinel(t, fmt.Sprintf("%s with %s", op, tt.name), err, tt.want)
		}
	}
}
