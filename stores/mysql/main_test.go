package mysqlstore_test

import (
	"database/sql"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if reason := noExampleServer(); reason != "" {
		// Examples cannot skip: leave them out, as the tests skip.
		skip := "^Example"
		if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
			skip = prev + "|" + skip
		}
		_ = flag.Set("test.skip", skip)
		fmt.Fprintf(os.Stderr, "mysqlstore: skipping the examples: %s\n", reason)
	}
	code := servers.Main(m)
	runExampleCleanups()
	os.Exit(code)
}

// noExampleServer says why the examples would find no server, or "" when
// mysqlserver will find one (or must, under OUTBOX_TEST_REQUIRE).
func noExampleServer() string {
	if os.Getenv(servers.EnvMySQLURL) != "" || servers.Required(servers.MySQL) {
		return ""
	}
	if _, err := servers.FindBinary([]string{"mariadbd", "mysqld"}, "/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin", "/usr/local/sbin"); err == nil {
		return ""
	}
	if _, err := servers.Docker(); err == nil {
		return ""
	}
	return "no MySQL or MariaDB: set " + servers.EnvMySQLURL
}

// exampleDB opens a database of its own on the test server. In a service
// this is sql.Open("mysql", dsn) with a DSN of your own.
func exampleDB() *sql.DB {
	t := &exampleT{name: "Example"}
	dsn, _ := mysqlserver.Database(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	exampleMu.Lock()
	exampleCleanups = append(exampleCleanups, t.cleanup)
	exampleMu.Unlock()
	return db
}

var (
	exampleMu       sync.Mutex
	exampleCleanups []func()
)

func runExampleCleanups() {
	exampleMu.Lock()
	defer exampleMu.Unlock()
	for _, c := range exampleCleanups {
		c()
	}
}

// exampleT lets examples, which have no *testing.T, use mysqlserver: a
// failure panics, which fails the example with its message.
type exampleT struct {
	testing.TB // nil: only the methods below are called
	name       string
	cleanups   []func()
}

func (t *exampleT) Helper()                           {}
func (t *exampleT) Name() string                      { return t.name }
func (t *exampleT) Logf(string, ...any)               {}
func (t *exampleT) Errorf(format string, args ...any) {}
func (t *exampleT) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Skip(args ...any)                  { panic(fmt.Sprint(args...)) }
func (t *exampleT) Skipf(format string, args ...any)  { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }

func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
