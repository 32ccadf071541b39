package pgserver

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// Process is a local PostgreSQL server of one test that the test can shut
// down (fast or immediate) and start again on the same port and data
// directory. Commits are durable across an immediate shutdown
// (synchronous_commit on). Its methods end the test on failure, so call
// them from the test's goroutine.
type Process struct {
	r   *servers.Restartable
	url string
}

// Start initialises and starts a local PostgreSQL server (wal_level
// logical) for this test, stopped when the test ends. It always runs a
// process, whatever OUTBOX_TEST_POSTGRES_URL says; without initdb and
// postgres the test skips, or fails under OUTBOX_TEST_REQUIRE.
func Start(t testing.TB) *Process {
	t.Helper()
	dir, err := initLocal()
	if err != nil {
		servers.Unavailable(t, servers.Postgres, "pgserver.Start needs a local PostgreSQL (initdb, postgres): "+err.Error())
		return nil
	}
	port, err := servers.FreePort()
	if err != nil {
		t.Fatalf("pgserver: %v", err)
	}
	p := &Process{url: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	p.r = servers.StartRestartable(t, "pgserver", func() (*servers.Process, error) {
		_, proc, err := startLocal(dir, port, true)
		return proc, err
	})
	return p
}

// For returns the same server, reporting failures to t (a subtest, whose
// goroutine may end on a failure).
func (p *Process) For(t testing.TB) *Process {
	return &Process{r: p.r.For(t), url: p.url}
}

// URL returns the server's URL; it stays the same across restarts.
func (p *Process) URL() string { return p.url }

// Stop shuts the server down and waits until it has exited: a fast
// shutdown (SIGINT: clients disconnected, a checkpoint), or with immediate
// an immediate one (SIGQUIT: no checkpoint; the next start recovers from
// the WAL, as after a crash). Stopping a stopped server does nothing.
func (p *Process) Stop(immediate bool) {
	p.r.Stop(map[bool]syscall.Signal{false: syscall.SIGINT, true: syscall.SIGQUIT}[immediate])
}

// Start starts the server again on the same port and data directory and
// waits until it answers. Starting a running server does nothing.
func (p *Process) Start() { p.r.Start() }
