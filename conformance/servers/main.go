package servers

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// mainRunning is set by Main: without it nothing would stop throwaway servers.
var mainRunning atomic.Bool

// Main runs the tests and then stops every throwaway process and container
// started in this test binary and removes their directories. A package whose
// tests use throwaway servers declares
//
//	func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }
//
// An interrupt (SIGINT, SIGTERM) during the tests also stops them before the
// binary exits.
func Main(m *testing.M) int { return MainFunc(m, nil) }

// MainFunc is Main for a package that prepares something on the test
// servers before its tests run, such as a database for its examples: setup
// (when not nil) runs once throwaway servers may be started, and the
// cleanup it returns runs after the tests, before those servers stop.
func MainFunc(m *testing.M, setup func() (cleanup func())) int {
	mainRunning.Store(true)

	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-interrupt:
			fmt.Fprintf(os.Stderr, "servers: %v: stopping throwaway servers\n", sig)
			runAtExit()
			os.Exit(1)
		case <-done:
		}
	}()

	cleanup := func() {}
	if setup != nil {
		cleanup = setup()
	}
	code := m.Run()
	cleanup()
	signal.Stop(interrupt)
	close(done)
	runAtExit()
	return code
}

// The at-exit list: what Main undoes, in reverse order of registration, so a
// process stops before its directory is removed.
var (
	exitMu   sync.Mutex
	exitSeq  uint64
	exitFunc = map[uint64]func(){}
)

// atExit registers fn to run when Main finishes; the returned function drops
// it again (for things stopped earlier).
func atExit(fn func()) (drop func()) {
	exitMu.Lock()
	defer exitMu.Unlock()
	exitSeq++
	id := exitSeq
	exitFunc[id] = fn
	return func() {
		exitMu.Lock()
		defer exitMu.Unlock()
		delete(exitFunc, id)
	}
}

// runAtExit runs and drops every registered function, newest first.
func runAtExit() {
	exitMu.Lock()
	ids := make([]uint64, 0, len(exitFunc))
	for id := range exitFunc {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	fns := make([]func(), len(ids))
	for i, id := range ids {
		fns[i] = exitFunc[id]
		delete(exitFunc, id)
	}
	exitMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
