package pgstore_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
)

// examplePool returns a pool on the test server and a schema of the
// example's own, and a function that drops the schema and closes the pool.
// Examples have no testing.T, so a stand-in gives pgserver what it needs.
func examplePool(name string) (*pgxpool.Pool, string, func()) {
	t := &exampleT{name: name}
	_, schema := pgserver.Schema(t)
	pool := pgserver.Pool(t)
	return pool, schema, t.cleanup
}

// exampleT is the part of testing.TB that pgserver uses. Calling any other
// method panics (the embedded interface is nil), and so does a failure: an
// example has no other way to fail than printing the wrong output.
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
