package mysqlstore_test

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
)

func TestMain(m *testing.M) {
	flag.Parse()
	var setup func() func()
	if reason := noExampleServer(); reason != "" {
		// Examples cannot skip: leave them out, as the tests skip.
		skip := "^Example"
		if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
			skip = prev + "|" + skip
		}
		_ = flag.Set("test.skip", skip)
		fmt.Fprintf(os.Stderr, "mysqlstore: skipping the examples: %s\n", reason)
	} else if examplesRun() {
		setup = prepareExamples
	}
	os.Exit(servers.MainFunc(m, setup))
}

// exampleDSNVar is the variable the examples read their server from, as a
// service would: they are meant to be copied, so they call no test helper.
const exampleDSNVar = "MYSQL_DSN"

// prepareExamples gives the examples a database of their own on the test
// server, in MYSQL_DSN, and returns what drops it.
func prepareExamples() (cleanup func()) {
	t := &exampleT{name: "Examples"}
	dsn, _ := mysqlserver.Database(t)
	os.Setenv(exampleDSNVar, dsn)
	return t.cleanup
}

// examplesRun says whether -test.run may select an example.
func examplesRun() bool {
	run := flag.Lookup("test.run").Value.String()
	if run == "" || strings.Contains(run, "Example") {
		return true
	}
	re, err := regexp.Compile(run)
	return err != nil || re.MatchString("Example")
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

// exampleT lets TestMain, which has no *testing.T, use mysqlserver for the
// examples: a failure panics with its message.
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
