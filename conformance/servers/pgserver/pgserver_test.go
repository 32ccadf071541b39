package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

func schemaExists(t *testing.T, url, schema string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestSchemaIsCreatedAndDropped(t *testing.T) {
	t.Parallel()
	url := URL(t) // skips here rather than in the subtest
	var schema string
	t.Run("use", func(t *testing.T) {
		_, schema = Schema(t)
		if !schemaExists(t, url, schema) {
			t.Fatalf("schema %s does not exist during the test", schema)
		}
		if err := execOnce(url, "CREATE TABLE "+pgx.Identifier{schema, "t"}.Sanitize()+" (id int)"); err != nil {
			t.Fatalf("create a table in the schema: %v", err)
		}
	})
	if schemaExists(t, url, schema) {
		t.Errorf("schema %s still exists after the test", schema)
	}
}

func TestSchemasOfParallelTestsDiffer(t *testing.T) {
	t.Parallel()
	URL(t) // skips here rather than in the subtests
	seen := make(chan string, 8)
	t.Run("group", func(t *testing.T) {
		for range cap(seen) {
			t.Run("s", func(t *testing.T) {
				t.Parallel()
				_, schema := Schema(t)
				seen <- schema
			})
		}
	})
	close(seen)
	names := map[string]bool{}
	for s := range seen {
		if names[s] {
			t.Errorf("schema %s handed out twice", s)
		}
		names[s] = true
	}
}

func TestPoolHasEmptySearchPath(t *testing.T) {
	t.Parallel()
	_, schema := Schema(t)
	pool := Pool(t)
	ctx := context.Background()

	var current *string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if current != nil {
		t.Errorf("current_schema() = %q, want NULL (an empty search_path)", *current)
	}

	_, err := pool.Exec(ctx, "CREATE TABLE forgot_the_schema (id int)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("unqualified CREATE TABLE: err = %v, want a PostgreSQL error", err)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE "+pgx.Identifier{schema, "qualified"}.Sanitize()+" (id int)"); err != nil {
		t.Errorf("qualified CREATE TABLE: %v", err)
	}
}

// TestLocalServer exercises the local-binary path even where
// OUTBOX_TEST_POSTGRES_URL names a server.
func TestLocalServer(t *testing.T) {
	t.Parallel()
	if _, err := servers.FindDir([]string{"initdb", "postgres"}, binDirs...); err != nil {
		t.Skipf("no local PostgreSQL: %v", err)
	}
	dir, err := initLocal()
	if err != nil {
		t.Fatalf("initdb: %v", err)
	}
	port, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dsn, proc, err := startLocal(dir, port, false)
	if err != nil {
		t.Fatalf("start local postgres: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ping(ctx, dsn); err != nil {
		t.Fatalf("ping local postgres: %v", err)
	}

	if err := proc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still answers after Stop", u.Host)
	}
}

// TestProcessRestart: a Process keeps its URL and its committed data across
// an immediate shutdown (no checkpoint: recovery from the WAL) and a fast
// one, and does not answer while stopped.
func TestProcessRestart(t *testing.T) {
	t.Parallel()
	p := Start(t)
	url := p.URL()
	if err := execOnce(url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	for i, immediate := range []bool{true, false} {
		if err := execOnce(url, fmt.Sprintf("INSERT INTO kept VALUES (%d)", i+2)); err != nil {
			t.Fatal(err)
		}
		p.Stop(immediate)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := ping(ctx, url); err == nil {
			t.Errorf("the server answers after Stop(%v)", immediate)
		}
		cancel()
		p.Start()
		if p.URL() != url {
			t.Fatalf("URL changed across a restart: %s, then %s", url, p.URL())
		}
		var n int
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		err = conn.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n)
		conn.Close(ctx)
		cancel()
		if err != nil || n != i+2 {
			t.Errorf("after Stop(%v) and Start: %d rows, %v; want %d (every committed row)", immediate, n, err, i+2)
		}
	}
}
