// Package pgserver gives tests a PostgreSQL server and a schema of their own
// on it.
//
// The server is the one in OUTBOX_TEST_POSTGRES_URL, else a throwaway local
// one (initdb and postgres from PATH or /usr/lib/postgresql/*/bin), else a
// postgres:16-alpine container; with none the test skips, or fails under
// OUTBOX_TEST_REQUIRE. See package servers, whose Main the test binary must
// call.
package pgserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/dockertest/v3"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// Docker image of the throwaway container.
const (
	ImageRepository = "postgres"
	ImageTag        = "16-alpine"
)

var finder = servers.Finder[string]{
	Backend: servers.Postgres,
	FromEnv: func(v string) (string, error) {
		if _, err := pgx.ParseConfig(v); err != nil {
			return "", err
		}
		return v, nil
	},
	Local: func() (string, error) {
		dir, err := initLocal()
		if err != nil {
			return "", err
		}
		port, err := servers.FreePort()
		if err != nil {
			return "", err
		}
		url, _, err := startLocal(dir, port, false)
		return url, err
	},
	Docker: startContainer,
}

// URL returns the connection URL of the test server, postgres://...,
// finding the server on first use.
func URL(t testing.TB) string {
	t.Helper()
	return finder.Get(t)
}

// Schema creates a schema for this test alone and drops it, with everything
// in it, when the test ends. It returns the server's URL and the schema's
// name; connections must qualify names with the schema or set search_path.
func Schema(t testing.TB) (url, schema string) {
	t.Helper()
	return SchemaAt(t, URL(t))
}

// SchemaAt is Schema on the server at url (a [Process] of the test's own).
func SchemaAt(t testing.TB, url string) (_, schema string) {
	t.Helper()
	schema = servers.Name(t, "outbox")
	ident := pgx.Identifier{schema}.Sanitize()
	if err := execOnce(url, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("pgserver: create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := execOnce(url, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			t.Errorf("pgserver: drop schema %s: %v", schema, err)
		}
	})
	return url, schema
}

// Pool returns a connection pool on the test server, closed when the test
// ends. Its connections have an empty search_path, so a query that forgets to
// qualify a name with its schema fails instead of finding a table by luck.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatalf("pgserver: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		t.Fatalf("pgserver: connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// execOnce runs one statement on a connection of its own.
func execOnce(url, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func ping(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// binDirs are where PostgreSQL's binaries hide when they are not on PATH.
var binDirs = []string{
	"/usr/lib/postgresql/*/bin",         // Debian, Ubuntu
	"/usr/pgsql-*/bin",                  // RHEL, Fedora (PGDG)
	"/usr/local/pgsql/bin",              // built from source
	"/opt/homebrew/opt/postgresql*/bin", // macOS, Homebrew
}

// initLocal initialises a cluster in a temporary directory and returns the
// directory.
func initLocal() (string, error) {
	bin, err := servers.FindDir([]string{"initdb", "postgres"}, binDirs...)
	if err != nil {
		return "", err
	}
	user, err := servers.ServiceUser("postgres")
	if err != nil {
		return "", err
	}
	dir, err := servers.TempDir("postgres", user)
	if err != nil {
		return "", err
	}
	err = servers.RunCommand(servers.ProcessConfig{
		Name: "initdb", Path: filepath.Join(bin, "initdb"), Dir: dir, User: user,
		Args:    []string{"-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"},
		Timeout: 2 * time.Minute,
	})
	return dir, err
}

// startLocal runs postgres on the cluster that initLocal made in dir, in
// the foreground (not pg_ctl, which would detach it) so that it dies with
// the test binary. durable keeps synchronous_commit on, so that a commit
// that returned survives an immediate shutdown (fsync stays off: the
// machine does not crash).
func startLocal(dir string, port int, durable bool) (string, *servers.Process, error) {
	bin, err := servers.FindDir([]string{"initdb", "postgres"}, binDirs...)
	if err != nil {
		return "", nil, err
	}
	user, err := servers.ServiceUser("postgres")
	if err != nil {
		return "", nil, err
	}
	syncCommit := "off"
	if durable {
		syncCommit = "on"
	}
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	proc, err := servers.StartProcess(servers.ProcessConfig{
		Name: "postgres", Path: filepath.Join(bin, "postgres"), Dir: dir, User: user,
		Args: []string{
			"-D", filepath.Join(dir, "data"), "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", dir,
			// A throwaway server: durability buys nothing, parallel tests
			// need connections.
			"-c", "fsync=off", "-c", "synchronous_commit=" + syncCommit, "-c", "full_page_writes=off",
			"-c", "max_connections=200",
			// pgstore's Config.Tail streams from logical replication slots.
			"-c", "wal_level=logical", "-c", "max_wal_senders=20", "-c", "max_replication_slots=20",
		},
		Addr:       fmt.Sprintf("127.0.0.1:%d", port),
		Ready:      func(ctx context.Context) error { return ping(ctx, url) },
		StopSignal: os.Interrupt, // fast shutdown: do not wait for clients
	})
	if err != nil {
		return "", nil, err
	}
	return url, proc, nil
}

func startContainer() (string, error) {
	res, err := servers.RunContainer(&dockertest.RunOptions{
		Repository: ImageRepository,
		Tag:        ImageTag,
		Env:        []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
		Cmd: []string{"postgres", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200",
			"-c", "wal_level=logical", "-c", "max_wal_senders=20", "-c", "max_replication_slots=20"},
		// The image trusts every host for databases, not for replication
		// connections (pgstore's Config.Tail): a script of the image's init
		// directory adds that line.
		Mounts:       []string{replicationInit() + ":/docker-entrypoint-initdb.d"},
		ExposedPorts: []string{"5432/tcp"},
	})
	if err != nil {
		return "", err
	}
	url := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", servers.HostPort(res, "5432/tcp"))
	if err := servers.WaitContainer(res, func(ctx context.Context) error { return ping(ctx, url) }); err != nil {
		return "", err
	}
	return url, nil
}

// replicationInit writes, once per process, a directory with the init
// script that lets any host connect for replication, and returns it.
var replicationInit = sync.OnceValue(func() string {
	dir, err := os.MkdirTemp("", "txoutbox-pg-init-")
	if err != nil {
		return os.TempDir()
	}
	script := "#!/bin/sh\necho 'host replication all all trust' >> \"$PGDATA/pg_hba.conf\"\n"
	_ = os.WriteFile(filepath.Join(dir, "replication.sh"), []byte(script), 0o755)
	return dir
})
