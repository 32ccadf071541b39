package kafkaserver

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// FakePartitions is the partition count of topics a fake cluster creates
// without being told how many (kfake's own default is 10).
const FakePartitions = 4

// defaults come before the caller's options, which may override them.
func defaults(opts []kfake.Opt) []kfake.Opt {
	return append([]kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(FakePartitions)}, opts...)
}

// Fake starts an in-process kfake cluster for this test, closed when the test
// ends: a single broker on 127.0.0.1 whose topics default to FakePartitions
// partitions, unless opts say otherwise (kfake.NumBrokers, SeedTopics,
// AllowAutoTopicCreation, ...). Its addresses are in ListenAddrs.
func Fake(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(defaults(opts)...)
	if err != nil {
		t.Fatalf("kafkaserver: start a kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// FakeProcess is a kfake cluster of one test that the test can stop and start
// again on the same ports, like a broker outage: kfake persists the cluster's
// records, offsets and metadata to a directory (kfake.DataDir) when it stops
// and reloads them when it starts. Its methods end the test on failure, so
// call them from the test's goroutine.
type FakeProcess struct {
	t     testing.TB
	opts  []kfake.Opt
	dir   string
	addrs []string
	ports []int

	mu      sync.Mutex
	cluster *kfake.Cluster // nil while stopped
}

// RestartableFake starts a kfake cluster for this test like Fake, persisting
// to a directory of the test, and stops it when the test ends. The options
// kfake.DataDir and kfake.Ports are set by FakeProcess and must not be given.
func RestartableFake(t testing.TB, opts ...kfake.Opt) *FakeProcess {
	t.Helper()
	f := &FakeProcess{t: t, opts: defaults(opts), dir: t.TempDir()}
	c, err := kfake.NewCluster(append(f.opts, kfake.DataDir(f.dir))...)
	if err != nil {
		t.Fatalf("kafkaserver: start a kfake cluster: %v", err)
	}
	f.cluster = c
	f.addrs = c.ListenAddrs()
	for _, a := range f.addrs {
		_, port, err := net.SplitHostPort(a)
		if err == nil {
			var p int
			p, err = strconv.Atoi(port)
			f.ports = append(f.ports, p)
		}
		if err != nil {
			c.Close()
			t.Fatalf("kafkaserver: kfake listens on %q: %v", a, err)
		}
	}
	t.Cleanup(f.Stop)
	return f
}

// Addrs returns the brokers' host:port addresses; they stay the same across
// restarts.
func (f *FakeProcess) Addrs() []string {
	return append([]string(nil), f.addrs...)
}

// Stop closes the cluster, saving its state, and its listeners and client
// connections with it. Stopping a stopped cluster does nothing.
func (f *FakeProcess) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cluster == nil {
		return
	}
	f.cluster.Close()
	f.cluster = nil
}

// Start reopens the cluster on the same ports from the saved state. Starting
// a running cluster does nothing.
func (f *FakeProcess) Start() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cluster != nil {
		return
	}
	opts := append(append([]kfake.Opt(nil), f.opts...), kfake.DataDir(f.dir), kfake.Ports(f.ports...))
	// A port just released can linger for a moment; anything else, or a
	// port taken by another process for good, fails the test.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := kfake.NewCluster(opts...)
		if err == nil {
			f.cluster = c
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			f.t.Fatalf("kafkaserver: restart the kfake cluster on %v: %v", f.addrs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
