package servers

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The test binary doubles as the helper processes of process_test.go.
func TestMain(m *testing.M) {
	if helper := os.Getenv(helperEnv); helper != "" {
		runHelper(helper)
		return
	}
	os.Exit(Main(m))
}

var nameShape = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func TestNameShape(t *testing.T) {
	t.Parallel()
	tests := []struct{ prefix, want string }{
		{"outbox", "outbox_testnameshape_"},
		{"Outbox-Store", "outbox_store_testnameshape_"},
		{"", "t_testnameshape_"},
		{"42", "t42_testnameshape_"},
		{"a very long prefix that goes on and on", "a_very_long_pref_"},
	}
	for _, tt := range tests {
		name := Name(t, tt.prefix)
		if !nameShape.MatchString(name) || len(name) > MaxNameLen {
			t.Errorf("Name(%q) = %q: want [a-z][a-z0-9_]*, at most %d chars", tt.prefix, name, MaxNameLen)
		}
		if !strings.HasPrefix(name, tt.want) {
			t.Errorf("Name(%q) = %q, want it to start with %q", tt.prefix, name, tt.want)
		}
	}
}

func TestNameOfLongSubtestKeepsItsEnd(t *testing.T) {
	t.Parallel()
	t.Run("Some/Deeply Nested/Subtest With A Name Far Longer Than Any Identifier Allows: the_end", func(t *testing.T) {
		name := Name(t, "outbox")
		if !nameShape.MatchString(name) || len(name) > MaxNameLen {
			t.Errorf("Name = %q: want [a-z][a-z0-9_]*, at most %d chars", name, MaxNameLen)
		}
		if !strings.Contains(name, "the_end_") {
			t.Errorf("Name = %q lost the end of the test name", name)
		}
	})
}

func TestNamesAreUnique(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	t.Run("group", func(t *testing.T) {
		for range 16 {
			t.Run("same", func(t *testing.T) {
				t.Parallel()
				for range 500 {
					n := Name(t, "outbox")
					mu.Lock()
					if seen[n] {
						t.Errorf("%q handed out twice", n)
					}
					seen[n] = true
					mu.Unlock()
				}
			})
		}
	})
}

func TestRequired(t *testing.T) {
	tests := []struct {
		env  string
		want map[string]bool
	}{
		{"", map[string]bool{Postgres: false, Kafka: false}},
		{"postgres", map[string]bool{Postgres: true, MySQL: false}},
		{"postgres,mysql", map[string]bool{Postgres: true, MySQL: true, Mongo: false}},
		{" kafka  nats ", map[string]bool{Kafka: true, NATS: true, Postgres: false}},
		{"mongo, NATS", map[string]bool{Mongo: true, NATS: true, Kafka: false}},
		{"all", map[string]bool{Postgres: true, MySQL: true, Mongo: true, Kafka: true, NATS: true}},
		{"postgresql", map[string]bool{Postgres: false}},
	}
	for _, tt := range tests {
		t.Setenv(EnvRequire, tt.env)
		for backend, want := range tt.want {
			if got := Required(backend); got != want {
				t.Errorf("%s=%q: Required(%q) = %v, want %v", EnvRequire, tt.env, backend, got, want)
			}
		}
	}
}

// recorder is a testing.TB that records how a test would have ended.
type recorder struct {
	testing.TB
	mu      sync.Mutex
	skipped string
	fatal   string
	logs    []string
}

func (r *recorder) Helper() {}

func (r *recorder) Skip(args ...any) { r.set(&r.skipped, fmt.Sprint(args...)) }

func (r *recorder) Fatal(args ...any) { r.set(&r.fatal, fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) { r.set(&r.fatal, fmt.Sprintf(format, args...)) }

func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recorder) set(field *string, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.skipped == "" && r.fatal == "" { // the first end counts, as with a real test
		*field = s
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		require, backend, reason string
		skip, fatal              string
	}{
		{
			"", Postgres, "local: no initdb found",
			"postgres: no server: set OUTBOX_TEST_POSTGRES_URL, install PostgreSQL, or start Docker (local: no initdb found)", "",
		},
		{
			"mysql", Postgres, "x",
			"postgres: no server: set OUTBOX_TEST_POSTGRES_URL, install PostgreSQL, or start Docker (x)", "",
		},
		{
			"postgres,kafka", Kafka, "docker: no daemon\nsecond line",
			"", "kafka: no server: set OUTBOX_TEST_KAFKA_BROKERS, run scripts/services kafka (Apache Kafka from Maven Central, for throwaway nodes), or start Docker (docker: no daemon second line)",
		},
		{
			"all", NATS, "",
			"", "nats: no server: set OUTBOX_TEST_NATS_URL, install nats-server, or start Docker",
		},
		{
			"postgress", Postgres, "x",
			"", `OUTBOX_TEST_REQUIRE="postgress": unknown backend "postgress": use a list of postgres, mysql, mongo, kafka, nats, chromium, or all`,
		},
	}
	for _, tt := range tests {
		t.Setenv(EnvRequire, tt.require)
		r := &recorder{TB: t}
		Unavailable(r, tt.backend, tt.reason)
		if r.skipped != tt.skip || r.fatal != tt.fatal {
			t.Errorf("%s=%q, Unavailable(%q, %q):\n skipped %q\n   fatal %q\nwant\n skipped %q\n   fatal %q",
				EnvRequire, tt.require, tt.backend, tt.reason, r.skipped, r.fatal, tt.skip, tt.fatal)
		}
	}
}

func TestFinderUsesTheEnvironment(t *testing.T) {
	t.Setenv(EnvRequire, "")
	t.Setenv(EnvMongoURL, "mongodb://example:27017")
	f := &Finder[string]{
		Backend: Mongo,
		FromEnv: func(v string) (string, error) { return "from env: " + v, nil },
		Local:   func() (string, error) { t.Error("Local called though the environment names a server"); return "", nil },
	}
	r := &recorder{TB: t}
	if got := f.Get(r); got != "from env: mongodb://example:27017" || r.skipped != "" || r.fatal != "" {
		t.Errorf("Get = %q, skipped %q, fatal %q", got, r.skipped, r.fatal)
	}
}

func TestFinderFailsOnABadEnvironment(t *testing.T) {
	t.Setenv(EnvRequire, "")
	t.Setenv(EnvMongoURL, "garbage")
	f := &Finder[string]{
		Backend: Mongo,
		FromEnv: func(string) (string, error) { return "", errors.New("not a URL") },
	}
	r := &recorder{TB: t}
	f.Get(r)
	if want := "mongo: OUTBOX_TEST_MONGO_URL: not a URL"; r.fatal != want {
		t.Errorf("fatal = %q, want %q (skipped %q)", r.fatal, want, r.skipped)
	}
}

func TestFinderFindsOnceAndRemembersFailure(t *testing.T) {
	t.Setenv(EnvRequire, "")
	t.Setenv(EnvMongoURL, "")
	var calls atomic.Int32
	f := &Finder[string]{
		Backend: Mongo,
		Local: func() (string, error) {
			calls.Add(1)
			return "", errors.New("no mongod found")
		},
	}
	var wg sync.WaitGroup
	recorders := make([]*recorder, 8)
	for i := range recorders {
		recorders[i] = &recorder{TB: t}
		wg.Go(func() { f.Get(recorders[i]) })
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("Local called %d times, want once", n)
	}
	want := "mongo: no server: set OUTBOX_TEST_MONGO_URL, install MongoDB, or start Docker (local: no mongod found)"
	for _, r := range recorders {
		if r.skipped != want {
			t.Errorf("skipped %q (fatal %q), want %q", r.skipped, r.fatal, want)
		}
	}

	t.Setenv(EnvRequire, "mongo")
	r := &recorder{TB: t}
	f.Get(r)
	if r.fatal != want {
		t.Errorf("under %s=mongo: fatal %q (skipped %q), want %q", EnvRequire, r.fatal, r.skipped, want)
	}
}

func TestFinderTriesDockerAfterLocal(t *testing.T) {
	t.Setenv(EnvRequire, "")
	t.Setenv(EnvNATSURL, "")
	if _, err := Docker(); err == nil {
		t.Skip("a Docker daemon answers; this test covers its absence")
	}
	f := &Finder[string]{
		Backend: NATS,
		Local:   func() (string, error) { return "", errors.New("no nats-server") },
		Docker:  func() (string, error) { t.Error("Docker called without a daemon"); return "", nil },
	}
	r := &recorder{TB: t}
	f.Get(r)
	if !strings.Contains(r.skipped, "(local: no nats-server; docker: no Docker daemon answered") {
		t.Errorf("skipped %q (fatal %q), want the local and the docker reasons", r.skipped, r.fatal)
	}
}

func TestFinderNeedsMainForThrowawayServers(t *testing.T) {
	// Not parallel: it pretends Main is not running.
	t.Setenv(EnvPostgresURL, "")
	mainRunning.Store(false)
	defer mainRunning.Store(true)
	f := &Finder[string]{
		Backend: Postgres,
		Local:   func() (string, error) { t.Error("Local called without Main"); return "", nil },
	}
	r := &recorder{TB: t}
	f.Get(r)
	if !strings.Contains(r.fatal, "func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }") {
		t.Errorf("fatal %q (skipped %q), want it to show the TestMain to add", r.fatal, r.skipped)
	}

	t.Setenv(EnvPostgresURL, "postgres://example/db")
	f = &Finder[string]{Backend: Postgres, FromEnv: func(v string) (string, error) { return v, nil }}
	r = &recorder{TB: t}
	if got := f.Get(r); got != "postgres://example/db" || r.fatal != "" {
		t.Errorf("with the environment set and no Main: Get = %q, fatal %q", got, r.fatal)
	}
}

func TestFinderLogsHowItFoundTheServer(t *testing.T) {
	t.Setenv(EnvNATSURL, "")
	f := &Finder[string]{
		Backend: NATS,
		Local:   func() (string, error) { return "nats://127.0.0.1:1", nil },
	}
	first, second := &recorder{TB: t}, &recorder{TB: t}
	if got := f.Get(first); got != "nats://127.0.0.1:1" {
		t.Fatalf("Get = %q", got)
	}
	f.Get(second)
	if len(first.logs) != 1 || !strings.Contains(first.logs[0], "throwaway local server: nats://127.0.0.1:1") || len(second.logs) != 0 {
		t.Errorf("logs: first %q, second %q; want one line, to the first caller", first.logs, second.logs)
	}
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for range 50 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
	port, _ := FreePort()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", port, err)
	}
	l.Close()
}

func TestDockerHostOf(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"unix:///var/run/docker.sock": "127.0.0.1",
		"tcp://10.1.2.3:2376":         "10.1.2.3",
		"tcp://localhost:2375":        "127.0.0.1",
		"npipe:////./pipe/docker":     "127.0.0.1",
		"http://docker.internal:2375": "docker.internal",
	}
	for endpoint, want := range tests {
		if got := dockerHostOf(endpoint); got != want {
			t.Errorf("dockerHostOf(%q) = %q, want %q", endpoint, got, want)
		}
	}
}

func TestContainerTTLOutlivesTheTestTimeout(t *testing.T) {
	t.Parallel()
	f := flag.Lookup("test.timeout")
	if f == nil {
		t.Skip("no -test.timeout flag")
	}
	timeout := f.Value.(flag.Getter).Get().(time.Duration)
	if ttl := containerTTL(); timeout > 0 && ttl <= timeout || ttl <= 0 {
		t.Errorf("containerTTL() = %v with -test.timeout=%v", ttl, timeout)
	}
}
