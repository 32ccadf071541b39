package backend

import (
	"context"
	"errors"
	"strings"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://app:s3cret@db:5432/app?sslmode=disable":         "postgres://app:xxxxx@db:5432/app?sslmode=disable",
		"postgres://app@db:5432/app":                                "postgres://app@db:5432/app",
		"postgres://db/app?user=app&password=s3cret":                "postgres://db/app?user=app&password=xxxxx",
		"mysql://root:p@ss@db:3306/app":                             "mysql://root:xxxxx@db:3306/app",
		"root:s3cret@tcp(127.0.0.1:3306)/test?parseTime=true":       "root:xxxxx@tcp(127.0.0.1:3306)/test?parseTime=true",
		"kafka://relay:s3cret@k1:9092,k2:9092?tls=true":             "kafka://relay:xxxxx@k1:9092,k2:9092?tls=true",
		"kafka://k1:9092?sasl=plain&user=relay&password=s3":         "kafka://k1:9092?sasl=plain&user=relay&password=xxxxx",
		"nats://t0ken@nats:4222":                                    "nats://xxxxx@nats:4222",
		"nats://a:pw1@n1:4222,nats://a:pw2@n2:4222":                 "nats://a:xxxxx@n1:4222,nats://a:xxxxx@n2:4222",
		"nats://n1:4222?token=s3cret":                               "nats://n1:4222?token=xxxxx",
		"mongodb://app:s3cret@m1:27017,m2:27017/app?replicaSet=rs0": "mongodb://app:xxxxx@m1:27017,m2:27017/app?replicaSet=rs0",
		"sqlite:///var/lib/app.db":                                  "sqlite:///var/lib/app.db",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStoreURLs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		kind string
		err  string // substring of the error, "" for none
	}{
		{"postgres://app@db:5432/app", Postgres, ""},
		{"postgresql://app@db/app", Postgres, ""},
		{"mysql://root:pw@db:3306/app", MySQL, ""},
		{"mariadb://root@db/app", MySQL, ""},
		{"root:pw@tcp(db:3306)/app", MySQL, ""},
		{"mongodb://m1:27017,m2:27017/app?replicaSet=rs0", MongoDB, ""},
		{"mongodb+srv://cluster.example.com/app", MongoDB, ""},
		{"sqlite:///var/lib/app.db", SQLite, ""},
		{"sqlite:app.db", SQLite, ""},
		{"redis://cache:6379", "", `unknown database "redis"`},
		{"just-a-name", "", "not a URL"},
	}
	for _, tt := range tests {
		kind, err := storeKind(tt.url)
		switch {
		case tt.err == "" && (err != nil || kind != tt.kind):
			t.Errorf("storeKind(%q) = %q, %v; want %q", tt.url, kind, err, tt.kind)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("storeKind(%q) error = %v; want %q", tt.url, err, tt.err)
		}
	}
}

func TestMySQLConfig(t *testing.T) {
	t.Parallel()
	cfg, err := MySQLConfig("mysql://app:p%40ss@db/app?parseTime=true&tls=skip-verify&loc=UTC")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "app" || cfg.Passwd != "p@ss" || cfg.Addr != "db:3306" || cfg.DBName != "app" || !cfg.ParseTime || cfg.TLSConfig != "skip-verify" {
		t.Errorf("config %+v", cfg)
	}
	if _, err := MySQLConfig("mysql://app:s3cret@db/app?parseTime=maybe"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad parameter: error %v (must exist and hide the password)", err)
	}
	cfg, err = MySQLConfig("root:@tcp(127.0.0.1:3306)/test")
	if err != nil || cfg.Addr != "127.0.0.1:3306" || cfg.DBName != "test" {
		t.Errorf("DSN: %+v, %v", cfg, err)
	}
}

func TestSQLitePath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"sqlite:///var/lib/app.db": "/var/lib/app.db",
		"sqlite:app.db":            "app.db",
		"sqlite:data/app.db":       "data/app.db",
		"sqlite://app.db":          "error",
		"sqlite:":                  "error",
		"sqlite:app.db?mode=ro":    "error",
	} {
		got, err := sqlitePath(in)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("sqlitePath(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

func TestMongoDatabase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"mongodb://m1:27017/app":                         "app",
		"mongodb://u:p@m1:27017,m2:27017/app?replicaSet": "app",
		"mongodb+srv://u:p/w@cluster.example.com/shop":   "shop",
		"mongodb://m1:27017/?directConnection=true":      "",
		"mongodb://m1:27017":                             "",
	} {
		if got := mongoDatabase(in); got != want {
			t.Errorf("mongoDatabase(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestURLErrors checks that every refused URL names its flag, shows an
// example of the right kind, and never shows the password.
func TestURLErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := []struct {
		opts StoreOptions
		want []string
	}{
		{StoreOptions{}, []string{"--store", "no store given", "OUTBOX_STORE_URL", "example: --store postgres://"}},
		{StoreOptions{URL: "redis://u:s3cret@cache/0"}, []string{"--store", "unknown database", "example: --store postgres://"}},
		{StoreOptions{URL: "postgres://u:s3cret@db:port/app"}, []string{"--store", "invalid port", "example: --store postgres://"}},
		{StoreOptions{URL: "mysql://u:s3cret@db:3306"}, []string{"--store", "no database", "example: --store mysql://"}},
		{StoreOptions{URL: "mongodb://u:s3cret@m1:27017/?replicaSet=rs0"}, []string{"no database", "example: --store mongodb://"}},
		{StoreOptions{URL: "sqlite://rel.db"}, []string{"three slashes", "example: --store sqlite:///"}},
		{StoreOptions{URL: "mysql://u:s3cret@db/app", Schema: "x"}, []string{"--schema", "only PostgreSQL"}},
		{StoreOptions{URL: "redis://u:s3cret@cache/0", Source: "OUTBOX_STORE_URL"}, []string{"OUTBOX_STORE_URL", "example: --store postgres://"}},
		{StoreOptions{URL: "postgres://u:s3cret@db/app?lanes=0"}, []string{"--store", "lanes=0", "from 1 to 4096", "example: --store postgres://", "?lanes=64"}},
		{StoreOptions{URL: "mysql://u:s3cret@db/app?lanes=many"}, []string{"lanes=many", "from 1 to 4096"}},
		{StoreOptions{URL: "mongodb://u:s3cret@m1/app?lanes=4097"}, []string{"lanes=4097"}},
		{StoreOptions{URL: "sqlite:///x.db?lanes=8&lanes=8"}, []string{"lanes is given twice"}},
		{StoreOptions{URL: "sqlite:///x.db?lanes=8&cache=shared"}, []string{"parameters are not supported but lanes=N"}},
		{StoreOptions{URL: "postgres://u:s3cret@db/app?lanes=8", Lanes: 16}, []string{"lanes=8 contradicts the lane count 16"}},
	}
	for _, tt := range stores {
		_, err := OpenStore(ctx, tt.opts)
		checkURLError(t, tt.opts.URL, err, tt.want)
	}
	brokers := []struct {
		opts BrokerOptions
		want []string
	}{
		{BrokerOptions{}, []string{"--broker", "no broker given", "OUTBOX_BROKER_URL", "example: --broker kafka://"}},
		{BrokerOptions{URL: "amqp://u:s3cret@rabbit"}, []string{"--broker", `unknown broker "amqp"`, "example: --broker kafka://"}},
		{BrokerOptions{URL: "kafka://u:s3cret@k1:9092?tsl=true"}, []string{"--broker", "tsl", "example: --broker kafka://"}},
		{BrokerOptions{URL: "nats://u:s3cret@n1:4222?crets=/x"}, []string{"--broker", "crets", "example: --broker nats://"}},
		{BrokerOptions{URL: "kafka://k1:9092", TopicMap: []string{"orders"}}, []string{"--topic-map", "FROM=TO", "example: --topic-map orders=prod.orders"}},
		{BrokerOptions{URL: "kafka://k1:9092", TopicMap: []string{"a=b", "a=c"}}, []string{"--topic-map", `already mapped to "b"`}},
	}
	for _, tt := range brokers {
		b, err := OpenBroker(ctx, tt.opts)
		if err == nil {
			b.Close()
		}
		checkURLError(t, tt.opts.URL, err, tt.want)
	}
}

func checkURLError(t *testing.T, url string, err error, want []string) {
	t.Helper()
	var ue *URLError
	if !errors.As(err, &ue) {
		t.Errorf("%q: error %v is not a *URLError", url, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q: error %q does not contain %q", url, err, w)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("%q: error %q shows the password", url, err)
	}
}

func TestTakeLanes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, out string
		lanes   int
	}{
		{"postgres://app@db/app", "postgres://app@db/app", 0},
		{"postgres://app@db/app?lanes=64", "postgres://app@db/app", 64},
		{"postgres://app@db/app?sslmode=disable&lanes=1&connect_timeout=5", "postgres://app@db/app?sslmode=disable&connect_timeout=5", 1},
		{"mongodb://m1,m2/app?replicaSet=rs0&Lanes=4096", "mongodb://m1,m2/app?replicaSet=rs0", 4096},
		{"root:p?ss@tcp(db:3306)/app?lanes=32&parseTime=true", "root:p?ss@tcp(db:3306)/app?parseTime=true", 32},
		{"root:pw@tcp(db:3306)/app", "root:pw@tcp(db:3306)/app", 0},
		{"sqlite:///var/lib/app.db?lanes=8", "sqlite:///var/lib/app.db", 8},
		{"sqlite:app.db?lanes=8", "sqlite:app.db", 8},
		{"postgres://db/app?lanesx=3", "postgres://db/app?lanesx=3", 0},
	} {
		out, lanes, err := takeLanes(tt.in)
		if err != nil || out != tt.out || lanes != tt.lanes {
			t.Errorf("takeLanes(%q) = %q, %d, %v; want %q, %d", tt.in, out, lanes, err, tt.out, tt.lanes)
		}
	}
}

// lanes=N reaches the adapter: the first migrate creates N lanes, and a
// later store asking for another count keeps them.
func TestStoreURLLanes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := "sqlite://" + t.TempDir() + "/outbox.db"
	lanes := func(url string) int {
		t.Helper()
		st, err := OpenStore(ctx, StoreOptions{URL: url})
		if err != nil {
			t.Fatalf("OpenStore(%q): %v", url, err)
		}
		defer func() { _ = st.Close() }()
		m, err := st.Migrator()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Migrate(ctx); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		sr, err := st.Stats()
		if err != nil {
			t.Fatal(err)
		}
		stats, err := sr.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		return stats.Lanes
	}
	if n := lanes(url + "?lanes=8"); n != 8 {
		t.Errorf("migrate with lanes=8 created %d lanes", n)
	}
	if n := lanes(url + "?lanes=16"); n != 8 {
		t.Errorf("a later migrate with lanes=16: %d lanes, want the 8 of the first", n)
	}
	if n := lanes(url); n != 8 {
		t.Errorf("without lanes=: %d lanes, want 8", n)
	}
}

func TestTopicMapping(t *testing.T) {
	t.Parallel()
	m, err := topicMapping([]string{"orders=prod.orders", " users = people "}, "eu.", "--topic-map")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"orders": "eu.prod.orders", "users": "eu.people", "other": "eu.other"} {
		if got := m(in); got != want {
			t.Errorf("map(%q) = %q, want %q", in, got, want)
		}
	}
	if m, err := topicMapping(nil, "", "--topic-map"); m != nil || err != nil {
		t.Errorf("no mapping: %v, %v", m != nil, err)
	}
}

// TestBrokerPingThroughWrappers checks that Ping finds the Pinger of a
// publisher behind an Unwrap chain (the tracing wrapper).
func TestBrokerPingThroughWrappers(t *testing.T) {
	t.Parallel()
	inner := &pinger{err: errors.New("down")}
	b := &Broker{Publisher: wrapper{wrapper{inner}}}
	if err := b.Ping(context.Background()); err == nil || err.Error() != "down" {
		t.Errorf("Ping = %v, want the inner publisher's error", err)
	}
	if err := (&Broker{Publisher: wrapper{noPing{}}}).Ping(context.Background()); err != nil {
		t.Errorf("Ping without a Pinger = %v, want nil", err)
	}
}

type noPing struct{}

func (noPing) Publish(context.Context, []outbox.Message) []error { return nil }

type pinger struct {
	noPing
	err error
}

func (p *pinger) Ping(context.Context) error { return p.err }

type wrapper struct{ inner outbox.Publisher }

func (w wrapper) Publish(ctx context.Context, m []outbox.Message) []error {
	return w.inner.Publish(ctx, m)
}
func (w wrapper) Unwrap() outbox.Publisher { return w.inner }
