package mongostore_test

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
)

// skipExamples skips examples that cannot run here. Examples print what
// they did against a real server and cannot skip themselves, so TestMain
// sets -test.skip (unless the command line set it):
//
//   - all of them when the servers package will find no MongoDB (no URL in
//     the environment, no mongod, no Docker) and OUTBOX_TEST_REQUIRE does
//     not name mongo: tests skip on their own then;
//   - the transactional Example when the server in OUTBOX_TEST_MONGO_URL has
//     no transactions (FerretDB, a standalone mongod). Throwaway servers are
//     replica sets and run it.
//
// It mirrors the discovery order of package mongoserver, which offers no
// way to ask without a testing.TB.
func skipExamples() {
	flag.Parse()
	skip := flag.Lookup("test.skip")
	if skip == nil || skip.Value.String() != "" {
		return
	}
	set := func(pattern, why string) {
		_ = skip.Value.Set(pattern)
		fmt.Fprintln(os.Stderr, "mongostore: "+why)
	}
	url := os.Getenv(servers.EnvMongoURL)
	if url == "" {
		if servers.Required(servers.Mongo) {
			return
		}
		if _, err := servers.FindBinary([]string{"mongod"}, "/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"); err == nil {
			return
		}
		if _, err := servers.Docker(); err == nil {
			return
		}
		set("^Example", "no MongoDB server: skipping the examples")
		return
	}
	d, err := probe(url)
	if err != nil {
		return // the tests report it
	}
	if d.noTransactions != "" {
		set("^Example$", "skipping Example, which needs transactions: "+d.noTransactions)
	}
}

// prepareExamples gives the examples a database of their own on the test
// server, in MONGODB_URI and MONGODB_DATABASE, as a service would read
// them (examples are meant to be copied, so they call no test helper), and
// returns what drops it. It does nothing when no example will run.
func prepareExamples() (cleanup func()) {
	if skip := flag.Lookup("test.skip").Value.String(); skip == "^Example" {
		return func() {}
	}
	run := flag.Lookup("test.run").Value.String()
	if re, err := regexp.Compile(run); run != "" && err == nil && !re.MatchString("Example") && !strings.Contains(run, "Example") {
		return func() {}
	}
	t := &exampleT{name: "Examples"}
	url, db := mongoserver.Database(t)
	os.Setenv("MONGODB_URI", url)
	os.Setenv("MONGODB_DATABASE", db)
	return t.cleanup
}

// exampleT is the part of testing.TB that mongoserver uses. Any other
// method panics (the embedded interface is nil), and so does a failure:
// TestMain has no other way to report it.
type exampleT struct {
	testing.TB
	name     string
	cleanups []func()
}

func (t *exampleT) Name() string              { return t.name }
func (t *exampleT) Helper()                   {}
func (t *exampleT) Logf(string, ...any)       {}
func (t *exampleT) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *exampleT) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *exampleT) Fatal(a ...any)            { panic(fmt.Sprint(a...)) }
func (t *exampleT) Skip(a ...any)             { panic(fmt.Sprint(a...)) }
func (t *exampleT) Skipf(f string, a ...any)  { panic(fmt.Sprintf(f, a...)) }

func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
