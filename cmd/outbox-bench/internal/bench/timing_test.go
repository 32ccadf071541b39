package bench

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// tailingStore is the in-memory store with a log: TailLog hands out a
// stream of the records put in it, as pgstore's Config.Tail does from its
// slot.
type tailingStore struct {
	*memory.Store
	recs chan outbox.LogRecord
}

func (s tailingStore) TailLog(ctx context.Context, _ outbox.TailParams) (outbox.LogStream, error) {
	return &chanStream{recs: s.recs}, nil
}

type chanStream struct {
	recs  chan outbox.LogRecord
	mu    sync.Mutex
	acked uint64
}

func (c *chanStream) Next(ctx context.Context, max int) ([]outbox.LogRecord, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-c.recs:
		out := []outbox.LogRecord{r}
		for len(out) < max {
			select {
			case r := <-c.recs:
				out = append(out, r)
			default:
				return out, nil
			}
		}
		return out, nil
	}
}

func (c *chanStream) Ack(pos uint64) {
	c.mu.Lock()
	c.acked = max(c.acked, pos)
	c.mu.Unlock()
}
func (c *chanStream) Park(context.Context, []outbox.Parked) error        { return nil }
func (c *chanStream) ParkedKeys(context.Context, bool) ([]string, error) { return nil, nil }
func (c *chanStream) Renew()                                             {}
func (c *chanStream) Close() error                                       { return nil }

// TestTimedStoreTails proves that the timing wrapper keeps the store's
// LogTailer: a relay over the wrapped store publishes what the log holds
// (the table is empty), and the timings count the stream's reads.
func TestTimedStoreTails(t *testing.T) {
	t.Parallel()
	st := tailingStore{Store: memory.NewStore(memory.StoreConfig{}), recs: make(chan outbox.LogRecord, 10)}
	tm := newTimings()
	wrapped := timeStore(st, tm)
	if _, ok := wrapped.(outbox.LogTailer); !ok {
		t.Fatal("the timed store hides the store's LogTailer: the relay would poll instead of tailing")
	}
	if _, ok := timeStore(pgLike{st}, newTimings()).(outbox.Listener); !ok {
		t.Fatal("the timed store hides the Listener of a store that also tails")
	}
	if _, ok := timeStore(pgLike{st}, newTimings()).(outbox.LogTailer); !ok {
		t.Fatal("the timed store hides the LogTailer of a store that also listens")
	}
	for i := range 10 {
		st.recs <- outbox.LogRecord{Record: outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "k", Payload: []byte("x")}, Seq: int64(i + 1)}, Checkpoint: uint64(i + 1)}
	}
	pub := &countingPublisher{}
	relay, err := outbox.NewRelay(wrapped, pub, outbox.RelayConfig{Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	for pub.count() < 10 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if n := pub.count(); n != 10 {
		t.Fatalf("published %d of the 10 records of the log", n)
	}
	select {
	case <-tm.held:
	default:
		t.Error("the timings did not learn that the relay held the log")
	}
	if err := tailed(true, tm); err != nil {
		t.Error(err)
	}
	if bd := tm.breakdown(); bd.LogReads == 0 || bd.RecordsPerLogRead <= 0 {
		t.Errorf("breakdown = %+v, want the log reads", bd)
	}
}

// pgLike is a store with both capabilities, as pgstore has.
type pgLike struct{ tailingStore }

func (pgLike) Listen(context.Context) (<-chan struct{}, error) { return make(chan struct{}), nil }

type countingPublisher struct {
	mu sync.Mutex
	n  int
}

func (p *countingPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	p.n += len(msgs)
	p.mu.Unlock()
	return make([]error, len(msgs))
}

func (p *countingPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// TestQuickPostgresTail runs the tail scenario at smoke-test sizes on the
// PostgreSQL of OUTBOX_TEST_POSTGRES_URL (with wal_level = logical) and
// checks that each tailed measurement ran, through the log, and left no
// replication slot behind.
func TestQuickPostgresTail(t *testing.T) {
	url := os.Getenv("OUTBOX_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("OUTBOX_TEST_POSTGRES_URL is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := openPostgres(ctx, url, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	slots := func() map[string]bool {
		rows, err := st.admin.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'txoutbox\_outbox\_bench\_%'`)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, n := range names {
			set[n] = true
		}
		return set
	}
	before := slots()
	r, err := Run(ctx, Config{Stores: []string{url}, Brokers: []string{"memory"}, Quick: true,
		Backlog: 500, Keys: 50, Relays: []int{1}, HotKeys: -1, Rates: []int{100},
		LatencyDuration: 500 * time.Millisecond, EnqueueDuration: 100 * time.Millisecond,
		Skip: []string{ScenarioInsert, ScenarioGrowth, ScenarioIdle, ScenarioProduce}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("failed measurements: %v", r.Errors)
	}
	p := r.Pairs[0]
	if reason := p.Skipped[ScenarioTail]; reason != "" {
		t.Skipf("the server cannot be tailed: %s", reason)
	}
	if s := r.Stores[0]; s.TailEnqueue == nil || len(s.TailEnqueue.Cases) != 3 {
		t.Errorf("tailed enqueue = %+v, want alone, +1 and +10", s.TailEnqueue)
	}
	if d := p.TailDrain; d == nil || !d.PerSec.Valid() || d.VsSimple <= 0 || len(d.Breakdowns) == 0 || d.Breakdowns[0].LogReads == 0 {
		t.Errorf("tailed drain = %+v, want a rate over the simple relay's, read from the log", d)
	}
	var tail *LatencyResult
	for i := range p.Latency {
		if p.Latency[i].Relay == RelayTail {
			tail = &p.Latency[i]
		}
	}
	if tail == nil || tail.Samples == 0 || tail.Lost != 0 || tail.VsSimpleP99 <= 0 || tail.LogReadP99 <= 0 {
		t.Errorf("tailed latency = %+v, want samples, nothing lost, the commit → read part and the ratio to the simple relay", tail)
	}
	for name := range slots() {
		if !before[name] {
			t.Errorf("replication slot %s left behind", name)
		}
	}
}
