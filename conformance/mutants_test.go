package conformance_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// The suites are only worth something if they fail on a broken adapter.
// Each mutant below is the reference implementation with one classic bug;
// TestMutantsAreCaught runs the suites against each in a child process and
// requires the named test to fail.

type mutant struct {
	// caughtBy is the suite test that must fail.
	caughtBy string
	run      func(t *testing.T)
}

var mutants = map[string]mutant{
	// The publisher reports success before the broker has the message, and
	// the send then fails: the relay marks lost messages delivered.
	"ack-before-publish": {"TestMutant/WritersAndRelaysLoseNothing", func(t *testing.T) {
		conformance.RunRelaySuite(t, conformance.RelayHarness{
			Store:  conformance.MemoryOutbox(),
			Broker: wrapBroker(func(p outbox.Publisher) outbox.Publisher { return &ackBeforePublish{inner: p} }),
		})
	}},
	// The publisher sends each message on its own, so a failure does not
	// hold back the later messages of its key.
	"reorder-on-failure": {"TestMutant/FailureHoldsBackLaterMessagesOfItsKey", func(t *testing.T) {
		conformance.RunPublisherSuite(t, wrapBroker(func(p outbox.Publisher) outbox.Publisher { return oneByOne{p} }))
	}},
	// Race 1: the store applies a settle whatever the lane's epoch (it
	// trusts the relay): a relay whose lane was taken over retries or
	// delivers records that the new holder is about to publish, and a
	// key's successor goes out while its predecessor waits.
	"settle-ignores-epoch": {"TestMutant/Lanes/LateSettleAfterTakeoverChangesNothing", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return &unfenced{Store: s, latest: map[int]int64{}} }))
	}},
	// Race 2: the store lets a relay take a lane whose lease has not run
	// out: two relays hold one key's lane, and its records are in flight
	// on both.
	"take-ignores-lease": {"TestMutant/Order/SameKeyWritersShareOneHolder", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return takeIgnoresLease{s} }))
	}},
	// Race 3: the store fences settles by owner name instead of epoch:
	// two workers of one relay share the name, and a late settle of the
	// first undoes the work of the second.
	"fence-by-owner": {"TestMutant/Lanes/SettleIsFencedByEpochNotOwner", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store {
			return &fenceByOwner{Store: s, owners: map[outbox.Lane]string{}, latest: map[string]map[int]int64{}}
		}))
	}},
	// The store charges no attempt when a lane is taken from a relay that
	// died: a message that crashes relays loops forever at zero attempts.
	"no-charge-on-takeover": {"TestMutant/Lanes/TakeoverChargesAnAttempt", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return noCharge{s} }))
	}},
	// The store reads above a "last sequence seen" watermark: a
	// transaction that commits late, below the watermark, is never
	// delivered.
	"watermark": {"TestMutant/Order/LateCommitLeavesNoGap", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return &watermark{Store: s} }))
	}},
	// Stats groups the topics' undelivered records without telling pending
	// records from dead letters (a forgotten "and not dead"): each topic's
	// dead letters count as pending too.
	"topic-stats-count-dead-as-pending": {"TestMutant/Capabilities/StatsPerTopic", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return deadAsPending{s} }))
	}},
	// Enqueue writes outside the caller's transaction: a rollback keeps the
	// message.
	"enqueue-outside-transaction": {"TestMutant/Atomicity/RollbackLeavesNothing", func(t *testing.T) {
		conformance.RunStoreSuite(t, conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
			s := memory.NewStore(memory.StoreConfig{Limits: opts.Limits})
			ob := conformance.NewMemoryOutbox(s)
			ob.Begin = func(ctx context.Context) (conformance.WriteTx, error) { return autocommitTx{s}, nil }
			return ob
		}})
	}},
}

const mutantEnv = "OUTBOX_CONFORMANCE_MUTANT"

func TestMutantsAreCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suites in child processes")
	}
	for name, m := range mutants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMutant$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name, "OUTBOX_TEST_TIMEOUT=10s")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suites passed against mutant %q; they must catch it\n%s", name, tail(out))
			}
			if !strings.Contains(string(out), "--- FAIL: "+m.caughtBy+" ") {
				t.Fatalf("mutant %q: %s did not fail (the child exited with %v)\n%s", name, m.caughtBy, err, tail(out))
			}
		})
	}
}

// TestMutant runs the suites against the mutant named in the environment;
// it is a child of TestMutantsAreCaught and skips otherwise.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestMutantsAreCaught")
	}
	m, ok := mutants[name]
	if !ok {
		t.Fatalf("unknown mutant %q", name)
	}
	m.run(t)
}

func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

func wrapBroker(wrap func(outbox.Publisher) outbox.Publisher) conformance.PublisherHarness {
	base := conformance.MemoryBroker()
	return conformance.PublisherHarness{New: func(t *testing.T) conformance.Broker {
		b := base.New(t)
		b.Publisher = wrap(b.Publisher)
		return b
	}}
}

func wrapStore(wrap func(*memory.Store) outbox.Store) conformance.StoreHarness {
	return conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
		s := memory.NewStore(memory.StoreConfig{Limits: opts.Limits, Lanes: opts.Lanes})
		ob := conformance.NewMemoryOutbox(s)
		ob.Store = wrap(s)
		return ob
	}}
}

type ackBeforePublish struct{ inner outbox.Publisher }

func (p *ackBeforePublish) Publish(ctx context.Context, msgs []outbox.Message) []error {
	go p.inner.Publish(ctx, slices.Clone(msgs)) // fails once the caller cancels ctx
	return make([]error, len(msgs))
}

type oneByOne struct{ inner outbox.Publisher }

func (p oneByOne) Publish(ctx context.Context, msgs []outbox.Message) []error {
	results := make([]error, len(msgs))
	for i := range msgs {
		results[i] = p.inner.Publish(ctx, msgs[i:i+1])[0]
	}
	return results
}

// unfenced settles at the latest epoch it has seen taken, whatever epoch
// the caller holds.
type unfenced struct {
	*memory.Store
	mu     sync.Mutex
	latest map[int]int64
}

func (s *unfenced) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	taken, err := s.Store.TakeLanes(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range taken {
		s.latest[l.ID] = l.Epoch
	}
	return taken, err
}

func (s *unfenced) Settle(ctx context.Context, p outbox.SettleParams) error {
	s.mu.Lock()
	p.Lanes = slices.Clone(p.Lanes)
	for i, l := range p.Lanes {
		if e, ok := s.latest[l.ID]; ok {
			p.Lanes[i].Epoch = e
		}
	}
	s.mu.Unlock()
	return s.Store.Settle(ctx, p)
}

// takeIgnoresLease frees a lane held by another relay before taking it.
type takeIgnoresLease struct{ *memory.Store }

func (s takeIgnoresLease) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	v, err := s.Store.SyncLanes(ctx, outbox.SyncParams{Owner: p.Owner, Lease: p.Lease})
	if err != nil {
		return nil, err
	}
	for _, l := range p.Lanes {
		if l.ID >= 0 && l.ID < len(v.Lanes) && v.Lanes[l.ID].Owner != "" {
			cur := v.Lanes[l.ID]
			_ = s.Store.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: cur.Owner, Lanes: []outbox.Lane{cur.Lane}})
		}
	}
	return s.Store.TakeLanes(ctx, p)
}

// fenceByOwner settles a lane at the latest epoch its owner name took it.
type fenceByOwner struct {
	*memory.Store
	mu     sync.Mutex
	owners map[outbox.Lane]string   // who took each lane at each epoch
	latest map[string]map[int]int64 // owner -> lane -> latest epoch taken
}

func (s *fenceByOwner) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	taken, err := s.Store.TakeLanes(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range taken {
		s.owners[l] = p.Owner
		if s.latest[p.Owner] == nil {
			s.latest[p.Owner] = map[int]int64{}
		}
		s.latest[p.Owner][l.ID] = l.Epoch
	}
	return taken, err
}

func (s *fenceByOwner) Settle(ctx context.Context, p outbox.SettleParams) error {
	s.mu.Lock()
	p.Lanes = slices.Clone(p.Lanes)
	for i, l := range p.Lanes {
		if owner, ok := s.owners[l]; ok {
			p.Lanes[i].Epoch = s.latest[owner][l.ID]
		}
	}
	s.mu.Unlock()
	return s.Store.Settle(ctx, p)
}

// noCharge takes lanes without charging their records.
type noCharge struct{ *memory.Store }

func (s noCharge) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	p.Charge = 0
	return s.Store.TakeLanes(ctx, p)
}

// watermark never reads below the highest Seq it has returned.
type watermark struct {
	*memory.Store
	mu   sync.Mutex
	high int64
}

func (s *watermark) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	s.mu.Lock()
	p.AfterSeq = max(p.AfterSeq, s.high)
	s.mu.Unlock()
	recs, err := s.Store.Read(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		s.high = max(s.high, r.Seq)
	}
	return recs, err
}

type autocommitTx struct{ s *memory.Store }

func (a autocommitTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	tx := a.s.Begin()
	if err := a.s.Enqueue(ctx, tx, msgs...); err != nil {
		return err
	}
	return tx.Commit()
}
func (autocommitTx) Commit(context.Context) error   { return nil }
func (autocommitTx) Rollback(context.Context) error { return nil }

// deadAsPending counts each topic's dead letters as pending too.
type deadAsPending struct{ *memory.Store }

func (s deadAsPending) Stats(ctx context.Context) (outbox.Stats, error) {
	st, err := s.Store.Stats(ctx)
	for i := range st.Topics {
		st.Topics[i].Pending += st.Topics[i].Dead
	}
	return st, err
}
