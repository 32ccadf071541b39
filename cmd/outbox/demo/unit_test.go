package demo

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/conformance/ledger"
	outbox "github.com/txoutbox/txoutbox/core"
)

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if got := h.quantile(0.5); got != 0 {
		t.Fatalf("empty histogram: p50 = %v, want 0", got)
	}
	var samples []time.Duration
	for range 10000 {
		d := time.Duration(rand.Int64N(int64(2 * time.Second)))
		samples = append(samples, d)
		h.add(d)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := samples[int(q*float64(len(samples)-1))]
		got := h.quantile(q)
		if diff := float64(got-want) / float64(want); diff < -0.04 || diff > 0.04 {
			t.Errorf("p%v = %v, want %v within 4%%", q*100, got, want)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every duration falls in a bucket whose middle is within 3% of it, and
	// buckets increase with the duration.
	prev := -1
	for us := int64(0); us < 1<<34; us = us*21/20 + 1 {
		d := time.Duration(us) * time.Microsecond
		b := bucketOf(d)
		if b < prev {
			t.Fatalf("bucket of %v is %d, below the bucket %d of a shorter duration", d, b, prev)
		}
		prev = b
		mid := bucketValue(b)
		if us >= 64 {
			if diff := float64(mid-d) / float64(d); diff < -0.03 || diff > 0.03 {
				t.Fatalf("%v is in bucket %d whose middle is %v", d, b, mid)
			}
		}
	}
}

func TestTrackerEitherOrder(t *testing.T) {
	k := newTracker()
	t0 := time.Now()
	k.commit("a", t0)
	k.arrive("a", t0.Add(10*time.Millisecond))
	k.arrive("b", t0) // before its writer got back from Commit
	k.commit("b", t0.Add(time.Millisecond))
	k.arrive("a", t0.Add(time.Second)) // a duplicate: not a second delivery
	p := k.snapshot()
	if p.committed != 2 || p.delivered != 2 {
		t.Fatalf("committed %d, delivered %d; want 2 and 2", p.committed, p.delivered)
	}
	if p.p99 > 11*time.Millisecond || p.p99 < 9*time.Millisecond {
		t.Fatalf("p99 = %v, want about 10ms (a duplicate is not a second delivery)", p.p99)
	}
}

func TestVerdict(t *testing.T) {
	clean := Verdict{Report: ledger.Report{Committed: 10, Delivered: 10, Duplicates: 2}, RelayKills: 3}
	if !clean.Clean() {
		t.Fatal("a run with duplicates only is clean")
	}
	if s := clean.sentence(); !strings.HasPrefix(s, "CLEAN") || !strings.Contains(s, "2 duplicates") || !strings.Contains(s, "3 relay kills") {
		t.Fatalf("sentence = %q", s)
	}
	for name, v := range map[string]Verdict{
		"lost":        {Report: ledger.Report{Committed: 10, Delivered: 9, Lost: 1}},
		"reordered":   {Report: ledger.Report{Committed: 10, Delivered: 10, OrderViolations: 1}},
		"leaked":      {Report: ledger.Report{Committed: 10, Delivered: 10, Leaked: 1}},
		"unknown":     {Report: ledger.Report{Committed: 10, Delivered: 10, Unknown: 1}},
		"nothing":     {},
		"interrupted": {Report: ledger.Report{Committed: 10, Delivered: 10}, Interrupted: true},
	} {
		if v.Clean() {
			t.Errorf("%s: Clean() = true", name)
		}
		if s := v.sentence(); !strings.HasPrefix(s, "NOT CLEAN") {
			t.Errorf("%s: sentence = %q", name, s)
		}
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "-", 812 * time.Microsecond: "812µs", 3140 * time.Microsecond: "3.1ms",
		42 * time.Millisecond: "42ms", 1243 * time.Millisecond: "1.24s", 12345 * time.Millisecond: "12.3s"} {
		if got := short(d); got != want {
			t.Errorf("short(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	c, err := Config{Duration: 10 * time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != EmbeddedSQLite || c.Broker != EmbeddedNATS || c.Rate != DefaultRate || c.Keys != DefaultKeys ||
		c.Writers != 4 || c.Kills != 3 || c.Lease != DefaultLease {
		t.Fatalf("defaults: %+v", c)
	}
	for _, bad := range []Config{{Duration: -time.Second}, {Rate: -1}, {Keys: 2, Writers: 3}, {Lease: time.Millisecond}, {Kills: -1}} {
		if _, err := bad.withDefaults(); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%+v: error %v, want one matching outbox.ErrInvalidConfig", bad, err)
		}
	}
}

func TestSQLitePath(t *testing.T) {
	if p, err := sqlitePath("sqlite:///var/lib/app.db"); err != nil || p != "/var/lib/app.db" {
		t.Errorf("absolute: %q, %v", p, err)
	}
	if p, err := sqlitePath("sqlite:app.db"); err != nil || !strings.HasSuffix(p, "/app.db") || !strings.HasPrefix(p, "/") {
		t.Errorf("relative: %q, %v", p, err)
	}
	for _, bad := range []string{"sqlite://host/app.db", "sqlite:", "sqlite:app.db?mode=ro"} {
		if _, err := sqlitePath(bad); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: error %v", bad, err)
		}
	}
	if got := sqliteURL("/tmp/x/demo.db"); got != "sqlite:///tmp/x/demo.db" {
		t.Errorf("sqliteURL = %q", got)
	}
}

func TestMySQLConfig(t *testing.T) {
	c, err := backend.MySQLConfig("mysql://app:s%40cret@db.example:3307/shop?parseTime=true")
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "app" || c.Passwd != "s@cret" || c.Addr != "db.example:3307" || c.DBName != "shop" || !c.ParseTime {
		t.Fatalf("parsed %+v", c)
	}
	c, err = backend.MySQLConfig("mariadb://root@db/shop")
	if err != nil || c.Addr != "db:3306" {
		t.Fatalf("default port: %+v, %v", c, err)
	}
	c, err = backend.MySQLConfig("root:@tcp(127.0.0.1:3306)/test")
	if err != nil || c.DBName != "test" || c.Addr != "127.0.0.1:3306" {
		t.Fatalf("DSN: %+v, %v", c, err)
	}
}

func TestRelayEnv(t *testing.T) {
	env := relayEnv([]string{"PATH=/bin", "OUTBOX_BATCH_SIZE=1", "OUTBOX_STORE_URL=postgres://prod", "OUTBOX_TEST_NATS_URL=nats://x", "OUTBOX_CONFIG=/etc/outbox.yaml"},
		"sqlite:///tmp/d.db", "nats://127.0.0.1:1")
	want := []string{"PATH=/bin", "OUTBOX_TEST_NATS_URL=nats://x", "OUTBOX_STORE_URL=sqlite:///tmp/d.db", "OUTBOX_BROKER_URL=nats://127.0.0.1:1"}
	if !slices.Equal(env, want) {
		t.Fatalf("relayEnv = %q\nwant %q", env, want)
	}
}

func TestTemporaryDSN(t *testing.T) {
	dsn := temporaryDSN("/tmp/demo.db")
	for _, want := range []string{"_synchronous=NORMAL", "_busy_timeout=30000", "_journal_mode=WAL", "_txlock=immediate"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN %s lacks %s", dsn, want)
		}
	}
}
