package conformance_test

import (
	"context"
	"fmt"
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
	// The store ignores keys when claiming (a plain FOR UPDATE SKIP LOCKED):
	// a successor is handed out while its predecessor is leased elsewhere.
	"successor-early": {"TestMutant/Order/SuccessorWaitsForPredecessor", func(t *testing.T) {
		conformance.RunStoreSuite(t, conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
			return newKeylessStore(opts.Limits).outbox()
		}})
	}},
	// The store drops a record whose lease expired instead of handing it out
	// again: a relay crash loses its batch.
	"lose-on-lease-expiry": {"TestMutant/Claim/ExpiredLeaseIsReclaimed", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return &loseExpired{Store: s} }))
	}},
	// The store counts an attempt when a failure is recorded, not at claim
	// time: a message that crashes the relay loops forever at zero attempts.
	"attempts-at-failure": {"TestMutant/Claim/ExpiredLeaseIsReclaimed", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return &attemptsAtFailure{Store: s, failures: map[string]int{}} }))
	}},
	// The store ignores the delay of Release: the records of a topic the
	// broker cannot take come straight back, and every claim spends a
	// publish on them.
	"release-ignores-delay": {"TestMutant/Claim/ReleaseWithDelayWaits", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return ignoreReleaseDelay{s} }))
	}},
	// The store claims above a "last sequence seen" watermark: a transaction
	// that commits late, below the watermark, is never delivered.
	"watermark": {"TestMutant/Order/LateCommitLeavesNoGap", func(t *testing.T) {
		conformance.RunStoreSuite(t, wrapStore(func(s *memory.Store) outbox.Store { return &watermark{Store: s} }))
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
		s := memory.NewStore(memory.StoreConfig{Limits: opts.Limits})
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

type loseExpired struct{ *memory.Store }

func (s *loseExpired) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	recs, err := s.Store.Claim(ctx, p)
	var kept []outbox.Record
	for _, r := range recs {
		if r.Attempts > 1 && r.LastError == "" { // claimed again without a failure: its lease expired
			_ = s.Store.MarkDelivered(ctx, outbox.MarkDeliveredParams{IDs: []string{r.ID}})
			continue
		}
		kept = append(kept, r)
	}
	return kept, err
}

type ignoreReleaseDelay struct{ *memory.Store }

func (s ignoreReleaseDelay) Release(ctx context.Context, p outbox.ReleaseParams) error {
	p.Delay = 0
	return s.Store.Release(ctx, p)
}

type attemptsAtFailure struct {
	*memory.Store
	mu       sync.Mutex
	failures map[string]int
}

func (s *attemptsAtFailure) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	recs, err := s.Store.Claim(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		recs[i].Attempts = s.failures[recs[i].ID] + 1
	}
	return recs, err
}

func (s *attemptsAtFailure) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	s.mu.Lock()
	for _, r := range p.Retries {
		s.failures[r.ID]++
	}
	s.mu.Unlock()
	return s.Store.ScheduleRetry(ctx, p)
}

type watermark struct {
	*memory.Store
	mu   sync.Mutex
	high int64
}

func (s *watermark) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	recs, err := s.Store.Claim(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	var above []outbox.Record
	for _, r := range recs {
		if r.Seq > s.high {
			above = append(above, r)
		}
	}
	for _, r := range above {
		s.high = max(s.high, r.Seq)
	}
	return above, err
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

// keylessStore leases records one by one and ignores keys.
type keylessStore struct {
	limits outbox.Limits
	mu     sync.Mutex
	recs   []*keylessRecord
	seq    int64
}

type keylessRecord struct {
	outbox.Record
	owner     string
	until     time.Time
	done      bool
	available time.Time
}

func newKeylessStore(limits outbox.Limits) *keylessStore { return &keylessStore{limits: limits} }

func (s *keylessStore) outbox() conformance.Outbox {
	return conformance.Outbox{Store: s, Begin: func(ctx context.Context) (conformance.WriteTx, error) {
		return &keylessTx{s: s}, nil
	}}
}

type keylessTx struct {
	s    *keylessStore
	msgs []outbox.Message
}

func (tx *keylessTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	if err := outbox.Prepare(msgs, tx.s.limits); err != nil {
		return err
	}
	tx.msgs = append(tx.msgs, msgs...)
	return nil
}

func (tx *keylessTx) Commit(context.Context) error {
	tx.s.mu.Lock()
	defer tx.s.mu.Unlock()
	for _, m := range tx.msgs {
		for _, r := range tx.s.recs {
			if r.ID == m.ID {
				return fmt.Errorf("duplicate ID %s", m.ID)
			}
		}
		tx.s.seq++
		tx.s.recs = append(tx.s.recs, &keylessRecord{Record: outbox.Record{Message: m, Seq: tx.s.seq}})
	}
	tx.msgs = nil
	return nil
}

func (tx *keylessTx) Rollback(context.Context) error { tx.msgs = nil; return nil }

func (s *keylessStore) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []outbox.Record
	for _, r := range s.recs {
		if len(out) == p.Limit {
			break
		}
		if r.done || now.Before(r.until) || now.Before(r.available) {
			continue
		}
		r.owner, r.until = p.Owner, now.Add(p.Lease)
		r.Attempts++
		out = append(out, r.Record)
	}
	return out, nil
}

func (s *keylessStore) each(ids []string, owner string, do func(*keylessRecord)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		if slices.Contains(ids, r.ID) && (owner == "" || r.owner == owner && time.Now().Before(r.until)) {
			do(r)
		}
	}
}

func (s *keylessStore) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	s.each(p.IDs, "", func(r *keylessRecord) { r.done = true })
	return nil
}

func (s *keylessStore) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	for _, rt := range p.Retries {
		s.each([]string{rt.ID}, p.Owner, func(r *keylessRecord) {
			r.LastError, r.available, r.until = rt.Error, time.Now().Add(rt.Delay), time.Time{}
		})
	}
	return nil
}

func (s *keylessStore) DeadLetter(ctx context.Context, p outbox.DeadLetterParams) error {
	for _, f := range p.Letters {
		s.each([]string{f.ID}, p.Owner, func(r *keylessRecord) { r.LastError, r.done = f.Error, true })
	}
	return nil
}

func (s *keylessStore) Release(ctx context.Context, p outbox.ReleaseParams) error {
	s.each(p.IDs, p.Owner, func(r *keylessRecord) { r.Attempts--; r.until = time.Time{} })
	return nil
}
