package backend

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestTargets: every kind of store and broker names its server, user,
// database and table for error messages, as the URL gives them, without
// the password.
func TestTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sqlite := filepath.Join(t.TempDir(), "app.db")
	stores := []struct {
		o    StoreOptions
		want Target
	}{
		{StoreOptions{URL: "postgres://app:s3cret@h1:5432,h2:5433/shop?sslmode=disable", Schema: "ob"},
			Target{System: "PostgreSQL", Addr: "h1:5432,h2:5433", User: "app", Database: "shop", Table: "ob.outbox", TableKind: "table",
				URL: "postgres://app:xxxxx@h1:5432,h2:5433/shop?sslmode=disable"}},
		{StoreOptions{URL: "root:s3cret@tcp(db:3306)/shop", Table: "events"},
			Target{System: "MySQL or MariaDB", Addr: "db:3306", User: "root", Database: "shop", Table: "events", TableKind: "table",
				URL: "root:xxxxx@tcp(db:3306)/shop"}},
		{StoreOptions{URL: "mongodb://app:s3cret@m1:27017,m2:27017/shop?replicaSet=rs0"},
			Target{System: "MongoDB", Addr: "m1:27017,m2:27017", User: "app", Database: "shop", Table: "outbox", TableKind: "collection",
				URL: "mongodb://app:xxxxx@m1:27017,m2:27017/shop?replicaSet=rs0"}},
		{StoreOptions{URL: "sqlite://" + sqlite},
			Target{System: "SQLite", Addr: sqlite, Table: "outbox", TableKind: "table", URL: "sqlite://" + sqlite}},
	}
	for _, tt := range stores {
		s, err := OpenStore(ctx, tt.o)
		if err != nil {
			t.Fatalf("OpenStore(%s): %v", tt.o.URL, err)
		}
		got := s.Target
		got.server = nil // compared by TestTargetNames
		if got != tt.want {
			t.Errorf("OpenStore(%s).Target =\n%+v, want\n%+v", tt.o.URL, s.Target, tt.want)
		}
		_ = s.Close()
	}
	b, err := OpenBroker(ctx, BrokerOptions{URL: "kafka://k1:9092,k2:9092?sasl=scram-sha-512&user=relay&password=s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := Target{System: "Kafka", Addr: "k1:9092,k2:9092", User: "relay", URL: "kafka://k1:9092,k2:9092?sasl=scram-sha-512&user=relay&password=xxxxx"}
	if b.Target != want {
		t.Errorf("Kafka Target =\n%+v, want\n%+v", b.Target, want)
	}

	_, err = OpenStore(ctx, StoreOptions{URL: "sqlite://" + filepath.Join(t.TempDir(), "no", "app.db")})
	if te, ok := errors.AsType[*TargetError](err); !ok || te.Target.System != "SQLite" {
		t.Errorf("OpenStore of a SQLite file in a missing directory = %v; want a TargetError naming the SQLite file", err)
	}
}

// TestTargetNames: a mysql:// URL does not say whether MySQL or MariaDB
// serves it, so messages name the server as it names itself once it has
// answered, and "MySQL or MariaDB" until then or when it does not answer.
func TestTargetNames(t *testing.T) {
	t.Parallel()
	s, err := OpenStore(context.Background(), StoreOptions{URL: "mysql://root@db:3306/shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Target.server == nil {
		t.Fatal("a MySQL target cannot ask its server's name")
	}
	asked := 0
	answering := Target{System: s.Target.System, server: &serverName{ask: func(ctx context.Context) (string, error) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		asked++
		return "MariaDB 10.11.6", nil
	}}}
	silent := Target{System: s.Target.System, server: &serverName{ask: func(ctx context.Context) (string, error) {
		return "", errors.New("Access denied for user 'root'")
	}}}
	for _, tt := range []struct {
		name string
		got  func() string
		want string
	}{
		{"known before asking", answering.KnownName, "MySQL or MariaDB"},
		{"asked", answering.AskName, "MariaDB"},
		{"known after asking", answering.KnownName, "MariaDB"},
		{"no answer", silent.AskName, "MySQL or MariaDB"},
		{"PostgreSQL", Target{System: "PostgreSQL"}.AskName, "PostgreSQL"},
	} {
		if got := tt.got(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	if asked != 1 {
		t.Errorf("the server was asked %d times, want once", asked)
	}
}

// TestStoreNamesAreFlagErrors: a table, schema or database name an adapter
// refuses is a URLError that names the flag, not the Go field.
func TestStoreNamesAreFlagErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o    StoreOptions
		want string
	}{
		{StoreOptions{URL: "postgres://db/app", Table: "a;b"}, `--table "a;b": has ';' at byte 1; use ASCII letters`},
		{StoreOptions{URL: "postgres://db/app", Schema: "9s"}, `--schema "9s": starts with a digit; use ASCII letters`},
		{StoreOptions{URL: "mysql://db/app", Table: "a-b"}, `--table "a-b": use ASCII letters`},
		{StoreOptions{URL: "mongodb://db/app", Table: "a$b"}, `--table "a$b": has '$' at byte 1`},
		{StoreOptions{URL: "mongodb://db/a$b"}, `--store "mongodb://db/a$b": database "a$b" has '$' at byte 1`},
		{StoreOptions{URL: "sqlite://" + filepath.Join(t.TempDir(), "x.db"), Table: "sqlite_x"}, `--table "sqlite_x": starts with sqlite_`},
	}
	for _, tt := range tests {
		_, err := OpenStore(context.Background(), tt.o)
		if ue, ok := errors.AsType[*URLError](err); !ok || len(ue.Error()) < len(tt.want) || ue.Error()[:len(tt.want)] != tt.want {
			t.Errorf("OpenStore(%+v) = %v; want a URLError starting %q", tt.o, err, tt.want)
		}
	}
}
