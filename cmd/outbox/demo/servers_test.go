package demo_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/cmd/outbox/demo"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// runID is the name the demo gave what it created, from its header.
func runID(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?i)outbox[_-]demo_?-?([0-9a-f]{8})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no run id in the output:\n%s", out)
	}
	return strings.ToLower(m[1])
}

// TestRealServers runs the demo against real servers (CI's PostgreSQL,
// MariaDB and NATS; a kfake cluster reached by URL like a real Kafka; an
// SQLite file of the user's) and checks that it removes what it created.
func TestRealServers(t *testing.T) {
	t.Run("postgres+nats/chaos", func(t *testing.T) {
		t.Parallel()
		pgURL, natsURL := pgserver.URL(t), natsserver.URL(t)
		ctx := testContext(t)
		cfg := quick(t, natsURL)
		cfg.Store = pgURL
		cfg.Duration = 3e9
		cfg.Chaos, cfg.Kills = true, 2
		cfg.RelayCommand = relayProcess(t)
		v, out := run(t, ctx, cfg)
		if v.RelayKills != 2 {
			t.Errorf("%d relay kills, want 2\n%s", v.RelayKills, out)
		}
		id := runID(t, out)
		conn, err := pgx.Connect(ctx, pgURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", "outbox_demo_"+id).Scan(&n); err != nil || n != 0 {
			t.Errorf("schema outbox_demo_%s: %d left (%v)", id, n, err)
		}
		natsStreamGone(t, ctx, natsURL, "OUTBOX_DEMO_"+strings.ToUpper(id))
	})
	t.Run("mysql+kafka", func(t *testing.T) {
		t.Parallel()
		dsn, _ := mysqlserver.Database(t)
		cluster := kafkaserver.Fake(t)
		ctx := testContext(t)
		cfg := quick(t, "kafka://"+strings.Join(cluster.ListenAddrs(), ","))
		cfg.Store = dsn
		_, out := run(t, ctx, cfg)
		id := runID(t, out)
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// The header names the server as VERSION() does: CI's is MariaDB.
		var version string
		if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
			t.Fatal(err)
		}
		product := "MySQL "
		if strings.Contains(strings.ToLower(version), "mariadb") {
			product = "MariaDB "
		}
		if !strings.Contains(out, "  store    "+product) {
			t.Errorf("server version %q, but the header does not say %q:\n%s", version, product, out)
		}
		var n int
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?",
			"outbox\\_demo\\_"+id+"%").Scan(&n)
		if err != nil || n != 0 {
			t.Errorf("tables outbox_demo_%s*: %d left (%v)", id, n, err)
		}
		client, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		topics, err := kadm.NewClient(client).ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range topics.Names() {
			if strings.Contains(name, id) {
				t.Errorf("topic %s is left", name)
			}
		}
	})
	t.Run("sqlite-file+nats", func(t *testing.T) {
		t.Parallel()
		natsURL := natsserver.URL(t)
		ctx := testContext(t)
		path := filepath.Join(t.TempDir(), "app.db")
		cfg := quick(t, natsURL)
		cfg.Store = "sqlite://" + path
		cfg.Chaos, cfg.Kills = true, 1
		cfg.RelayCommand = relayProcess(t)
		_, out := run(t, ctx, cfg)
		id := runID(t, out)
		db, err := sqlitestore.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name LIKE ?", "outbox_demo_"+id+"%").Scan(&n); err != nil || n != 0 {
			t.Errorf("tables outbox_demo_%s*: %d left in %s (%v)", id, n, path, err)
		}
		natsStreamGone(t, ctx, natsURL, "OUTBOX_DEMO_"+strings.ToUpper(id))
	})
}

func natsStreamGone(t *testing.T, ctx context.Context, url, stream string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream %s: %v, want it deleted", stream, err)
	}
}

// TestRealServerErrors checks that a server that does not answer ends the
// demo with an error, not a hang.
func TestRealServerErrors(t *testing.T) {
	t.Parallel()
	cfg := quick(t, demo.EmbeddedNATS)
	cfg.Store = "postgres://postgres@127.0.0.1:1/none?connect_timeout=2"
	var out strings.Builder
	if _, err := demo.Run(testContext(t), cfg, &out); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("Run with PostgreSQL down: %v, want an error saying it does not answer", err)
	}
	leftovers(t, cfg.TempDir)
}
