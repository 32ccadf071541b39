package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Result is the verdict of one scenario on one pair.
type Result struct {
	Pair     string
	Scenario string
	conformance.Report
	// Relays is how many relays ran at once.
	Relays int
	// Faults counts the injected faults: kills, connection kills, outages.
	Faults int
	// DuplicateBound is the most duplicates the faults can explain:
	// faults × relays × messages in flight per relay.
	DuplicateBound int
	// Recovery is how long after the last fault ended the last committed
	// message arrived.
	Recovery time.Duration
	// Skipped, when set, says why the scenario did not run.
	Skipped string
	// Failed says the scenario's test failed, whatever the report shows
	// (it may have stopped before the report was taken).
	Failed bool
}

// OK reports whether the scenario kept every promise.
func (r Result) OK() bool {
	if r.Failed {
		return false
	}
	return r.Skipped != "" || r.Clean() && r.Duplicates <= r.DuplicateBound
}

type scenario struct {
	name string
	run  func(s *session) (skip string)
	// alone: the scenario stops the broker, which a pair's targets may
	// share (one Kafka node for all its topics), so no other scenario of
	// the pair runs meanwhile.
	alone bool
}

var scenarios = []scenario{
	{name: "relay killed", run: func(s *session) string { return s.killRelays(1) }},
	{name: "2 relays, one killed", run: func(s *session) string { return s.killRelays(2) }},
	{name: "3 relays, one killed", run: func(s *session) string { return s.killRelays(3) }},
	{name: "broker outage", run: (*session).brokerOutage, alone: true},
	{name: "db connections killed", run: (*session).connectionLoss},
	{name: "db restarted (fast)", run: func(s *session) string { return s.restartStore(false) }, alone: true},
	{name: "db restarted (immediate)", run: func(s *session) string { return s.restartStore(true) }, alone: true},
	{name: "writers fail", run: (*session).writersFail},
	{name: "poison message", run: (*session).poison},
	{name: "late commit", run: (*session).lateCommit},
	{name: "relays join and leave", run: (*session).joinAndLeave},
	{name: "zombie relay", run: (*session).zombie},
	{name: "shared keys, late commits", run: (*session).sharedKeys},
}

// Run runs every scenario against fresh targets of one pair, each as a
// subtest of t, and returns the results in order. A subtest fails when its
// scenario breaks a promise. Up to o.Parallel scenarios run at once (each
// on targets of its own: its own relays, outbox, topic and connections),
// except the broker outage, which runs alone since targets may share their
// broker. The faults of one scenario then never reach another; its timings
// (the Recovery of the results) are only shared with the machine.
func Run(t *testing.T, pair string, newTarget NewTarget, o Options) []Result {
	scenarios := scenarios
	if len(o.Only) > 0 {
		scenarios = slices.DeleteFunc(slices.Clone(scenarios), func(sc scenario) bool { return !slices.Contains(o.Only, sc.name) })
	}
	results := make([]Result, len(scenarios))
	slots := make(chan struct{}, max(o.Parallel, 1))
	var broker sync.RWMutex // held exclusively by a scenario that stops the broker
	var wg sync.WaitGroup
	for i, sc := range scenarios {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			if sc.alone {
				broker.Lock()
				defer broker.Unlock()
			} else {
				broker.RLock()
				defer broker.RUnlock()
			}
			results[i] = runScenario(t, pair, sc, newTarget, o)
		})
		if o.Parallel <= 1 {
			wg.Wait() // in order, one after the other
		}
	}
	wg.Wait()
	return results
}

// runScenario runs sc as a subtest of t and returns its result.
func runScenario(t *testing.T, pair string, sc scenario, newTarget NewTarget, o Options) Result {
	res := Result{Pair: pair, Scenario: sc.name}
	t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
		defer func() { res.Failed = t.Failed() }() // also when t.Fatal stopped the scenario early
		ctx, cancel := context.WithTimeout(t.Context(), o.Timeout)
		defer cancel()
		tg := newTarget(t)
		s := &session{t: t, ctx: ctx, tg: tg, o: o, ledger: conformance.NewLedger(), res: &res}
		conformance.ConsumeInto(t, ctx, tg.Broker, s.ledger, tg.Topic)
		if skip := sc.run(s); skip != "" {
			res.Skipped = skip
			t.Skip(skip)
		}
		s.stopRelays()
		res.Report = s.ledger.Report()
		spec := relaySpec("")
		res.DuplicateBound = max(res.Faults, 1) * max(res.Relays, 1) * spec.BatchSize * spec.Concurrency
		t.Logf("%s: %s faults=%d relays=%d recovery=%s", sc.name, res.Report, res.Faults, res.Relays, res.Recovery.Round(time.Millisecond))
		if !res.OK() {
			t.Errorf("%s broke a promise: %s (duplicate bound %d)", sc.name, res.Report, res.DuplicateBound)
		}
	})
	return res
}

// session is one scenario run.
type session struct {
	t      *testing.T
	ctx    context.Context
	tg     Target
	o      Options
	ledger *conformance.Ledger
	res    *Result

	mu       sync.Mutex
	relays   []Relay
	owners   int
	lastHurt time.Time // when the last fault ended
}

func (s *session) startRelay(slot int) {
	s.t.Helper()
	s.mu.Lock()
	s.owners++
	owner := fmt.Sprintf("chaos-%d-%d", slot, s.owners)
	s.mu.Unlock()
	r, err := s.tg.StartRelay(s.ctx, relaySpec(owner))
	if err != nil {
		s.t.Fatalf("starting relay %s: %v", owner, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.relays) <= slot {
		s.relays = append(s.relays, nil)
	}
	s.relays[slot] = r
}

func (s *session) startRelays(n int) {
	s.res.Relays = n
	for i := range n {
		s.startRelay(i)
	}
}

func (s *session) stopRelays() {
	s.mu.Lock()
	relays := s.relays
	s.relays = nil
	s.mu.Unlock()
	for _, r := range relays {
		if r != nil {
			if err := r.Stop(); err != nil {
				s.t.Errorf("stopping a relay: %v", err)
			}
		}
	}
}

func (s *session) faultEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.Faults++
	s.lastHurt = time.Now()
}

// waitAll waits for every committed message and records the recovery time.
func (s *session) waitAll() {
	s.t.Helper()
	if err := s.ledger.WaitAll(s.ctx); err != nil {
		s.t.Fatalf("%v; %s", err, s.ledger.Report())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastHurt.IsZero() {
		s.res.Recovery = time.Since(s.lastHurt)
	}
}

// during runs the writers and, meanwhile, fault at n evenly spread moments
// (with jitter) of the time the writers are expected to take.
func (s *session) during(load loadMode, n int, fault func(i int)) {
	s.t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.write(load)
	}()
	span := s.expectedWriteTime()
	start := time.Now()
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 3))
	for i := range n {
		at := time.Duration(float64(span) * (float64(i) + 0.5 + rng.Float64()*0.5) / float64(n+1))
		select {
		case <-time.After(time.Until(start.Add(at))):
		case <-s.ctx.Done():
			s.t.Fatalf("scenario timed out while injecting faults")
		}
		fault(i)
	}
	<-done
}

func (s *session) expectedWriteTime() time.Duration {
	if s.o.Rate <= 0 {
		return time.Second
	}
	return time.Duration(float64(s.o.Events) / float64(s.o.Rate) * float64(time.Second))
}

func (s *session) killRelays(n int) string {
	s.startRelays(n)
	s.during(loadCommit, s.o.Kills, func(int) {
		s.mu.Lock()
		victim := s.relays[0]
		s.mu.Unlock()
		if err := victim.Kill(); err != nil {
			s.t.Errorf("killing a relay: %v", err)
		}
		s.faultEnded()
		s.startRelay(0)
	})
	s.waitAll()
	return ""
}

func (s *session) brokerOutage() string {
	if s.tg.StopBroker == nil || s.tg.StartBroker == nil {
		return "the target cannot stop and start its broker"
	}
	return s.outage("the broker", s.tg.StopBroker, s.tg.StartBroker, s.o.Outage)
}

// restartStore shuts the database down (fast or immediate) while the
// writers write and starts it again: relays and writers reconnect, and
// whatever committed before is delivered.
func (s *session) restartStore(immediate bool) string {
	if s.tg.StopStore == nil || s.tg.StartStore == nil {
		return "the target cannot restart its database"
	}
	return s.outage("the database", func() error { return s.tg.StopStore(immediate) }, s.tg.StartStore, s.o.Restart)
}

// outage runs two relays and, while the writers write, stops what (with
// stop), keeps it down for d and starts it again.
func (s *session) outage(what string, stop, start func() error, d time.Duration) string {
	s.startRelays(2)
	s.during(loadCommit, 1, func(int) {
		if err := stop(); err != nil {
			s.t.Fatalf("stopping %s: %v", what, err)
		}
		select {
		case <-time.After(d):
		case <-s.ctx.Done():
		}
		if err := start(); err != nil {
			s.t.Fatalf("starting %s: %v", what, err)
		}
		s.faultEnded()
	})
	s.waitAll()
	return ""
}

func (s *session) connectionLoss() string {
	if s.tg.KillConnections == nil {
		return "the target cannot kill database connections"
	}
	s.startRelays(2)
	killed := 0
	s.during(loadCommit, s.o.ConnectionKills, func(int) {
		n, err := s.tg.KillConnections(s.ctx)
		if err != nil {
			s.t.Errorf("killing connections: %v", err)
		}
		killed += n
		s.faultEnded()
	})
	s.waitAll()
	s.t.Logf("killed %d database connections in %d rounds", killed, s.o.ConnectionKills)
	return ""
}

func (s *session) writersFail() string {
	s.startRelays(2)
	s.during(loadFailing, 0, nil)
	s.waitAll()
	return ""
}

func (s *session) lateCommit() string {
	s.startRelays(2)
	tx, err := s.tg.Outbox.Begin(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(s.ctx) }()
	held := []outbox.Message{{Topic: s.tg.Topic, Key: "late", Payload: []byte("late")}}
	if err := tx.Enqueue(s.ctx, held...); err != nil { // takes a low sequence number
		s.t.Fatal(err)
	}
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		select {
		case <-time.After(s.o.Hold):
		case <-s.ctx.Done():
			return
		}
		if err := tx.Commit(s.ctx); err != nil {
			s.t.Errorf("committing the held transaction: %v", err)
			return
		}
		s.ledger.Committed(held...)
		s.faultEnded()
	}()
	s.write(loadCommit)
	<-committed
	s.waitAll()
	return ""
}

func (s *session) poison() string {
	p := s.tg.Poison
	if p == nil {
		return "the target has no poison message"
	}
	dls, ok := s.tg.Outbox.Store.(outbox.DeadLetterStore)
	if !ok {
		return "the store is not an outbox.DeadLetterStore"
	}
	s.res.Relays = 1
	spec := relaySpec("chaos-poison")
	spec.MaxAttempts = 3
	r, err := s.tg.StartRelay(s.ctx, spec)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.relays = append(s.relays, r)
	s.mu.Unlock()

	bad := []outbox.Message{{Topic: s.tg.Topic, Key: "poison", Payload: p.Payload}}
	if err := writeTx(s.ctx, s.tg.Outbox, bad, commit); err != nil {
		s.t.Fatal(err)
	}
	s.write(loadCommit)
	s.waitAll() // every other key flowed past the poison message
	var dead []outbox.DeadLetter
	for len(dead) == 0 {
		dead, err = dls.ListDead(s.ctx, outbox.ListDeadParams{IDs: []string{bad[0].ID}})
		if err != nil {
			s.t.Fatal(err)
		}
		if len(dead) == 0 {
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.ctx.Done():
				s.t.Fatal("the poison message was never dead-lettered")
			}
		}
	}
	wantAttempts := spec.MaxAttempts
	if p.Permanent {
		wantAttempts = 1
	}
	if dead[0].LastError == "" || dead[0].Attempts != wantAttempts {
		s.t.Errorf("dead letter has attempts %d and error %q; want %d attempts and the broker's reason", dead[0].Attempts, dead[0].LastError, wantAttempts)
	}
	s.t.Logf("dead-lettered after %d attempts: %s", dead[0].Attempts, dead[0].LastError)
	if err := p.Fix(s.ctx); err != nil {
		s.t.Fatalf("fixing the broker: %v", err)
	}
	if n, err := dls.ReplayDead(s.ctx, outbox.SelectDead{IDs: []string{bad[0].ID}}); err != nil || n != 1 {
		s.t.Fatalf("ReplayDead = %d, %v", n, err)
	}
	s.ledger.Committed(bad...)
	s.faultEnded()
	s.waitAll()
	return ""
}

// joinAndLeave starts one relay and, while the writers write, alternately
// adds a relay (the others give it lanes) and stops one gracefully (it
// gives its lanes back).
func (s *session) joinAndLeave() string {
	s.startRelays(1)
	s.during(loadCommit, s.o.Kills, func(i int) {
		s.mu.Lock()
		n := len(s.relays)
		s.mu.Unlock()
		if i%2 == 0 || n == 1 {
			s.startRelay(n)
		} else {
			s.mu.Lock()
			victim := s.relays[n-1]
			s.relays = s.relays[:n-1]
			s.mu.Unlock()
			if err := victim.Stop(); err != nil {
				s.t.Errorf("stopping a relay: %v", err)
			}
		}
		s.mu.Lock()
		s.res.Relays = max(s.res.Relays, len(s.relays))
		s.mu.Unlock()
		s.faultEnded()
	})
	s.waitAll()
	return ""
}

// zombie runs two relays and, while the writers write, freezes one of them
// for twice its lease and lets it go on: the other takes its lanes, and the
// zombie's late outcomes must change nothing. At most duplicates.
func (s *session) zombie() string {
	s.startRelays(2)
	spec := relaySpec("")
	s.during(loadCommit, max(1, s.o.Kills/2), func(i int) {
		s.mu.Lock()
		victim := s.relays[i%2]
		s.mu.Unlock()
		if err := victim.Pause(); err != nil {
			s.t.Fatalf("pausing a relay: %v", err)
		}
		select {
		case <-time.After(2 * spec.Lease):
		case <-s.ctx.Done():
		}
		if err := victim.Resume(); err != nil {
			s.t.Fatalf("resuming a relay: %v", err)
		}
		s.faultEnded()
	})
	s.waitAll()
	return ""
}

// sharedKeys has writers of one key that do not serialize on a row, while
// relays are killed: T1 writes key k (taking the lower sequence number) and
// stays open, T2 writes k and commits, and T1 commits only once T2's
// message has arrived. Commit order is T2 then T1, and so must be the
// order of first deliveries: no relay may hold T2's message back for T1's,
// nor hand the two to different relays.
func (s *session) sharedKeys() string {
	if s.tg.SingleWriter {
		return "the store lets one write transaction in at a time"
	}
	s.startRelays(2)
	pairs := max(4, s.o.Kills*2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range pairs {
			if s.ctx.Err() != nil {
				return
			}
			key := fmt.Sprintf("shared-%d", i%4)
			if err := s.latePair(key, i); err != nil {
				s.t.Errorf("shared key %s: %v", key, err)
				return
			}
		}
	}()
	s.during(loadCommit, s.o.Kills, func(int) {
		s.mu.Lock()
		victim := s.relays[0]
		s.mu.Unlock()
		if err := victim.Kill(); err != nil {
			s.t.Errorf("killing a relay: %v", err)
		}
		s.faultEnded()
		s.startRelay(0)
	})
	<-done
	s.waitAll()
	return ""
}

// latePair commits two messages of key in the reverse order of their
// sequence numbers.
func (s *session) latePair(key string, i int) error {
	t1, err := s.tg.Outbox.Begin(s.ctx)
	if err != nil {
		return err
	}
	defer func() { _ = t1.Rollback(s.ctx) }()
	first := []outbox.Message{{Topic: s.tg.Topic, Key: key, Payload: fmt.Appendf(nil, "%d-t1", i)}}
	if err := t1.Enqueue(s.ctx, first...); err != nil {
		return err
	}
	second := []outbox.Message{{Topic: s.tg.Topic, Key: key, Payload: fmt.Appendf(nil, "%d-t2", i)}}
	if err := writeTx(s.ctx, s.tg.Outbox, second, commit); err != nil {
		return err
	}
	s.ledger.Committed(second...)
	if err := s.ledger.WaitArrived(s.ctx, second[0].ID); err != nil {
		return fmt.Errorf("T2's message never arrived while T1 was open: %w", err)
	}
	if err := t1.Commit(s.ctx); err != nil {
		return err
	}
	s.ledger.Committed(first...)
	return nil
}
