package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// chunkLog is a LogStream that hands out the given chunks, one per Next,
// then waits; it records the acknowledged position.
type chunkLog struct {
	mu     sync.Mutex
	chunks [][]LogRecord
	acked  atomic.Uint64
}

func (c *chunkLog) Next(ctx context.Context, max int) ([]LogRecord, error) {
	c.mu.Lock()
	if len(c.chunks) > 0 {
		recs := c.chunks[0]
		c.chunks = c.chunks[1:]
		c.mu.Unlock()
		return recs, nil
	}
	c.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}
func (c *chunkLog) Ack(pos uint64) {
	for {
		old := c.acked.Load()
		if pos <= old || c.acked.CompareAndSwap(old, pos) {
			return
		}
	}
}
func (c *chunkLog) Park(context.Context, []Parked) error               { return nil }
func (c *chunkLog) ParkedKeys(context.Context, bool) ([]string, error) { return nil, nil }
func (c *chunkLog) Renew()                                             {}
func (c *chunkLog) Close() error                                       { return nil }

// gatePublisher holds the messages of one key until released, and lets
// the others through, recording their order.
type gatePublisher struct {
	key     string
	held    chan struct{} // closed when a held call arrived
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sent    []string
}

func (p *gatePublisher) Publish(_ context.Context, msgs []Message) []error {
	for _, m := range msgs {
		if m.Key == p.key {
			p.once.Do(func() { close(p.held) })
			<-p.release
			break
		}
	}
	p.mu.Lock()
	for _, m := range msgs {
		p.sent = append(p.sent, m.ID)
	}
	p.mu.Unlock()
	return make([]error, len(msgs))
}

// Several batches of the log are in flight at once, on workers that own
// keys; the log is acknowledged only up to the last transaction every
// worker finished. Here the worker of key "slow" holds chunk 1 while the
// other worker publishes chunks 1 and 2: the acknowledged position stays
// below chunk 1's end until "slow" is published, then covers both chunks.
func TestTailAcksOnlyWhatEveryWorkerFinished(t *testing.T) {
	const workers = 2
	// A key on each worker.
	slow, fast := "slow", ""
	for i := 0; fast == ""; i++ {
		if k := string(rune('a' + i)); LaneOf(k, "", workers) != LaneOf(slow, "", workers) {
			fast = k
		}
	}
	log := &chunkLog{chunks: [][]LogRecord{
		{logRec("s1", slow, 0), logRec("f1", fast, 10)},
		{logRec("f2", fast, 20)},
	}}
	pub := &gatePublisher{key: slow, held: make(chan struct{}), release: make(chan struct{})}
	r := tailTestRelay(t, pub, false)
	r.cfg.Concurrency = workers
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.stream(ctx, log) }()

	<-pub.held
	waitFor(t, func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return len(pub.sent) == 2 // f1 and f2, while s1 is held
	})
	if got := log.acked.Load(); got != 0 {
		t.Fatalf("acknowledged %d while s1 of chunk 1 is in flight, want 0", got)
	}
	close(pub.release)
	waitFor(t, func() bool { return log.acked.Load() == 20 })
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("stream: %v", err)
	}
}

// waitFor polls cond until it holds, failing t after a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(time.Millisecond)
	}
}
