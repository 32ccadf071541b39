package natsserver

import (
	"fmt"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// Process is a local nats-server of one test that the test can stop and
// start again, on the same port and with the same store directory, so that
// JetStream data outlives the outage. Its methods end the test on failure, so
// call them from the test's goroutine.
type Process struct {
	r    *servers.Restartable
	port int
}

// Start starts a local nats-server with JetStream for this test, stopped when
// the test ends. It always runs a process, whatever OUTBOX_TEST_NATS_URL
// says; without the nats-server binary the test skips, or fails under
// OUTBOX_TEST_REQUIRE.
func Start(t testing.TB) *Process {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		servers.Unavailable(t, servers.NATS, "natsserver.Start needs a local nats-server binary: "+err.Error())
		return nil
	}
	port, err := servers.FreePort()
	if err != nil {
		t.Fatalf("natsserver: %v", err)
	}
	dir := t.TempDir()
	p := &Process{port: port}
	p.r = servers.StartRestartable(t, "natsserver", func() (*servers.Process, error) {
		proc, err := startServer(bin, port, dir)
		if err != nil {
			err = fmt.Errorf("nats-server on port %d: %w", port, err)
		}
		return proc, err
	})
	return p
}

// URL returns the server's URL; it stays the same across restarts.
func (p *Process) URL() string {
	return fmt.Sprintf("nats://127.0.0.1:%d", p.port)
}

// Stop shuts the server down gracefully and waits until it has exited.
// Stopping a stopped server does nothing.
func (p *Process) Stop() { p.r.Stop(nil) }

// Start starts the server again on the same port and store directory and
// waits until JetStream answers. Starting a running server does nothing.
func (p *Process) Start() { p.r.Start() }
