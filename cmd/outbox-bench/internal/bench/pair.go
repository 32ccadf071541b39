package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// pair measures one store × broker pair: the drain by the simple relay and
// by 1, 2 and 4 txoutbox relays (rounds interleaved, so that drift in the
// machine's load hits them alike), then the latency at each rate.
func (b *bencher) pair(ctx context.Context, s storeTarget, br brokerTarget, sr *StoreReport, brr *BrokerReport, pr *PairReport) error {
	c := b.cfg
	name := sr.Label() + " × " + brr.Label()
	runSimple := c.runs(ScenarioSimple)
	if c.runs(ScenarioDrain) {
		for _, n := range c.Relays {
			pr.Drain = append(pr.Drain, DrainResult{Relays: n})
		}
	}
	_, tails := s.(tailTarget)
	var tail *DrainResult // the drain by one relay tailing the log
	if tails && c.runsTail(ScenarioDrain) {
		tail = &DrainResult{Relays: 1}
	}
	if runSimple || c.runs(ScenarioDrain) || tail != nil {
		var simple Measure
		for round := range c.Rounds {
			if runSimple {
				b.progress.step("%s: drain %s records with the simple relay (round %d/%d)", name, number(float64(c.Backlog)), round+1, c.Rounds)
				r, _, err := b.drain(ctx, s, br, sr, 0, false, fmt.Sprintf("drain-%s-%s-simple-%d", sr.Label(), brr.Label(), round+1))
				var good bool
				if good, runSimple, err = b.outcome(ctx, pr, ScenarioSimple, name+" simple relay drain", err); err != nil {
					return err
				}
				if good {
					simple.add(r)
					b.progress.done("%s ev/s", number(r))
				}
			}
			for i := range pr.Drain {
				d := &pr.Drain[i]
				b.progress.step("%s: drain %s records with %s (round %d/%d)", name, number(float64(c.Backlog)), plural(d.Relays, "txoutbox relay"), round+1, c.Rounds)
				r, bd, err := b.drain(ctx, s, br, sr, d.Relays, false, fmt.Sprintf("drain-%s-%s-%d-%d", sr.Label(), brr.Label(), d.Relays, round+1))
				if err != nil {
					if err := b.failed(ctx, fmt.Sprintf("%s drain with %d relays", name, d.Relays), err); err != nil {
						return err
					}
					continue
				}
				d.PerSec.add(r)
				d.Breakdowns = append(d.Breakdowns, *bd)
				b.progress.done("%s ev/s; per read of %.0f: read %.1f ms; publish %.1f ms, settle %.1f ms per batch; %d empty reads",
					number(r), bd.RecordsPerRead, bd.ReadMs, bd.PublishMs, bd.SettleMs, bd.EmptyReads)
			}
			if tail != nil {
				b.progress.step("%s: drain %s records with 1 txoutbox relay tailing the WAL (round %d/%d)", name, number(float64(c.Backlog)), round+1, c.Rounds)
				r, bd, err := b.drain(ctx, s, br, sr, 1, true, fmt.Sprintf("drain-%s-%s-tail-%d", sr.Label(), brr.Label(), round+1))
				good, keep, err := b.outcome(ctx, pr, ScenarioTail, name+" drain by a relay tailing the WAL", err)
				switch {
				case err != nil:
					return err
				case !keep:
					tail = nil
				case good:
					tail.PerSec.add(r)
					tail.Breakdowns = append(tail.Breakdowns, *bd)
					b.progress.done("%s ev/s; per log read of %.0f: %.2f ms; publish %.1f ms per batch; %d parks",
						number(r), bd.RecordsPerLogRead, bd.LogReadMs, bd.PublishMs, bd.Parks)
				}
			}
		}
		if c.runs(ScenarioDrain) && c.HotKeys > 0 && c.HotKeys < c.Keys {
			hot := DrainResult{Relays: 1}
			b.keys = c.HotKeys
			for round := range c.Rounds {
				b.progress.step("%s: drain %s records over %d hot keys with 1 txoutbox relay (round %d/%d)", name, number(float64(c.Backlog)), c.HotKeys, round+1, c.Rounds)
				r, bd, err := b.drain(ctx, s, br, sr, 1, false, fmt.Sprintf("drain-%s-%s-hot-%d", sr.Label(), brr.Label(), round+1))
				if err != nil {
					if err := b.failed(ctx, name+" hot-keys drain", err); err != nil {
						b.keys = 0
						return err
					}
					continue
				}
				hot.PerSec.add(r)
				hot.Breakdowns = append(hot.Breakdowns, *bd)
				b.progress.done("%s ev/s; per read of %.0f: read %.1f ms; publish %.1f ms, settle %.1f ms per batch",
					number(r), bd.RecordsPerRead, bd.ReadMs, bd.PublishMs, bd.SettleMs)
			}
			b.keys = 0
			if hot.PerSec.Valid() {
				pr.HotDrain = &hot
			}
		}
		if simple.Valid() {
			pr.Simple = &simple
		}
		if tail != nil && tail.PerSec.Valid() {
			pr.TailDrain = tail
		}
		drains := make([]*DrainResult, 0, len(pr.Drain)+1)
		for i := range pr.Drain {
			drains = append(drains, &pr.Drain[i])
		}
		if pr.TailDrain != nil {
			drains = append(drains, pr.TailDrain)
		}
		for _, d := range drains {
			if pr.Simple != nil {
				d.VsSimple = ratio(d.PerSec.Median, pr.Simple.Median)
			}
			if brr.Produce != nil {
				d.VsProduce = ratio(d.PerSec.Median, brr.Produce.Median)
			}
		}
		if h := pr.HotDrain; h != nil {
			if pr.Simple != nil {
				h.VsSimple = ratio(h.PerSec.Median, pr.Simple.Median)
			}
			for _, d := range pr.Drain {
				if d.Relays == 1 && d.PerSec.Valid() {
					h.VsAllKeys = ratio(h.PerSec.Median, d.PerSec.Median)
				}
			}
		}
	}
	if !c.runs(ScenarioLatency) {
		return nil
	}
	runTail := tails && c.runs(ScenarioTail)
	for _, rate := range c.Rates {
		for _, relay := range []string{RelayTxoutbox, RelayTail, RelaySimple} {
			scenario := ScenarioLatency
			switch relay {
			case RelaySimple:
				if !runSimple {
					continue
				}
				scenario = ScenarioSimple
			case RelayTail:
				if !runTail {
					continue
				}
				scenario = ScenarioTail
			}
			b.progress.step("%s: commit → broker-ack latency at %s ev/s for %v, %s relay", name, number(float64(rate)), c.LatencyDuration, relay)
			res, err := b.latency(ctx, s, br, rate, relay, fmt.Sprintf("latency-%s-%s-%s-%d", sr.Label(), brr.Label(), relay, rate))
			good, keep, err := b.outcome(ctx, pr, scenario, fmt.Sprintf("%s latency at %d ev/s, %s relay", name, rate, relay), err)
			if err != nil {
				return err
			}
			if !keep && relay == RelayTail {
				runTail = false
			}
			if !good {
				continue
			}
			pr.Latency = append(pr.Latency, res)
			per := ""
			if bd := res.Breakdown; bd != nil && relay == RelayTail {
				per = fmt.Sprintf("; commit → read from the log p50 %s, p99 %s ms; per log read of %.1f: %.2f ms (waits included); publish %.2f ms per batch; %d parks",
					msText(res.LogReadP50), msText(res.LogReadP99), bd.RecordsPerLogRead, bd.LogReadMs, bd.PublishMs, bd.Parks)
			} else if bd != nil {
				per = fmt.Sprintf("; per read of %.1f: read %.2f ms; publish %.2f ms, settle %.2f ms per batch", bd.RecordsPerRead, bd.ReadMs, bd.PublishMs, bd.SettleMs)
			}
			b.progress.done("p50 %s, p99 %s, p999 %s ms over %d events (%s ev/s achieved)%s",
				msText(res.P50), msText(res.P99), msText(res.P999), res.Samples, number(res.Achieved), per)
		}
	}
	for i := range pr.Latency {
		l := &pr.Latency[i]
		if l.Relay == RelaySimple {
			continue
		}
		for _, o := range pr.Latency {
			if o.Relay == RelaySimple && o.Rate == l.Rate {
				l.VsSimpleP99 = ratio(l.P99, o.P99)
			}
		}
	}
	return nil
}

// outcome sorts out the error of a measurement of a pair that the pair may
// not support (the simple relay, tailing): it records a skip (keep false)
// or a failure, and reports whether the measurement is good; err is set
// when the run must stop.
func (b *bencher) outcome(ctx context.Context, pr *PairReport, scenario, what string, merr error) (good, keep bool, err error) {
	switch {
	case skip(&pr.Skipped, scenario, merr):
		b.progress.done("skipped: %s", pr.Skipped[scenario])
		return false, false, nil
	case merr != nil:
		return false, true, b.failed(ctx, what, merr)
	}
	return true, true, nil
}

// drain fills a fresh outbox with the backlog, then times its move to a
// fresh topic by relays txoutbox relays (0: the simple relay) until a
// consumer has seen every record. With tail, the outbox is tailed: the
// backlog waits in the log (no relay runs while it is written), and the
// relay publishes it from there.
func (b *bencher) drain(ctx context.Context, s storeTarget, br brokerTarget, sr *StoreReport, relays int, tail bool, name string) (float64, *Breakdown, error) {
	c := b.cfg
	o, err := b.newOutbox(ctx, s, tag("drain"), 4, tail)
	if err != nil {
		return 0, nil, err
	}
	defer b.dropOutbox(ctx, o, tail)
	var so simpleOutbox
	if relays == 0 {
		if so, err = o.simple(); err != nil {
			return 0, nil, err
		}
	}
	t, err := br.newTopic(ctx, tag("drain"))
	if err != nil {
		return 0, nil, err
	}
	defer t.drop(context.WithoutCancel(ctx)) //nolint:errcheck // best effort

	b.progress.update("filling")
	fill, err := b.fill(ctx, o, t.name(), c.Backlog)
	if err != nil {
		return 0, nil, fmt.Errorf("fill the backlog: %w", err)
	}
	if !tail { // the table's rate; a tailed outbox writes to the WAL
		if sr.Backfill == nil {
			sr.Backfill = &Measure{}
		}
		sr.Backfill.add(fill)
	}
	if err := o.settle(ctx); err != nil {
		return 0, nil, err
	}

	seen := newSeenSet(c.Backlog)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	consumerErrs, err := t.consume(cctx, seen.add)
	if err != nil {
		return 0, nil, fmt.Errorf("consume: %w", err)
	}

	var run *running
	if relays == 0 {
		run, err = b.prepareSimple(ctx, so, t, nil)
	} else {
		run, err = b.prepareRelays(ctx, o, t, relays, nil)
	}
	if err != nil {
		return 0, nil, err
	}
	defer run.stop()
	stopProfile := b.profile(name)
	start := time.Now()
	run.start(ctx)
	stopWatch := b.progress.watch(250*time.Millisecond, func() {
		n := seen.count()
		b.progress.update("%s/%s, %s ev/s", number(float64(n)), number(float64(c.Backlog)), number(rate(n, time.Since(start))))
	})
	timeout := time.NewTimer(max(3*time.Minute, time.Duration(c.Backlog/200)*time.Second))
	defer timeout.Stop()
	select {
	case <-seen.done:
	case err := <-consumerErrs:
		err = errors.Join(err, errors.New("the consumer stopped"))
		stopWatch()
		stopProfile()
		return 0, nil, err
	case err := <-run.failed:
		stopWatch()
		stopProfile()
		return 0, nil, err
	case <-timeout.C:
		stopWatch()
		stopProfile()
		return 0, nil, fmt.Errorf("the consumer saw %d of %d records before the timeout", seen.count(), c.Backlog)
	case <-ctx.Done():
		stopWatch()
		stopProfile()
		return 0, nil, ctx.Err()
	}
	elapsed := time.Since(start)
	stopWatch()
	stopProfile()
	if err := tailed(tail, run.timings); err != nil {
		return 0, nil, err
	}
	var bd *Breakdown
	if run.timings != nil {
		bd = run.timings.breakdown()
	}
	return rate(c.Backlog, elapsed), bd, nil
}

// running is a set of relays (or the simple relay) ready to start.
type running struct {
	runs    []func(ctx context.Context) error
	closers []func()
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// failed receives the first error of a relay that ended by itself.
	failed chan error
	// timings learns the calls of txoutbox relays (nil for the simple
	// relay).
	timings *timings
}

func (r *running) start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	for _, run := range r.runs {
		r.wg.Go(func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				select {
				case r.failed <- err:
				default:
				}
			}
		})
	}
}

// stop stops the relays, waits for them and closes their connections.
func (r *running) stop() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}

// holding waits until a relay holds the log it tails, or fails.
func (r *running) holding(ctx context.Context) error {
	t := time.NewTimer(tailHoldTimeout)
	defer t.Stop()
	select {
	case <-r.timings.held:
		return nil
	case err := <-r.failed:
		return err
	case <-t.C:
		return fmt.Errorf("no relay held the log within %v", tailHoldTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tailHoldTimeout bounds the wait for a relay to start streaming from the
// log.
const tailHoldTimeout = 30 * time.Second

// tailed checks that the relays of a measurement of a tailed outbox did
// tail its log (through the timing wrapper) rather than poll its table.
func tailed(tail bool, t *timings) error {
	if !tail || t == nil {
		return nil
	}
	if t.tails.Load() == 0 || t.logReads.Load() == 0 {
		return errors.New("the relay never read the log: it did not tail")
	}
	return nil
}

// newOutbox creates a fresh outbox in s, tailed when tail is set.
func (b *bencher) newOutbox(ctx context.Context, s storeTarget, tag string, writers int, tail bool) (outboxTarget, error) {
	if !tail {
		return s.newOutbox(ctx, tag, writers)
	}
	t, ok := s.(tailTarget)
	if !ok {
		return nil, unsupported("the store has no log to tail")
	}
	return t.newTailOutbox(ctx, tag, writers)
}

// dropOutbox drops o. For a tailed outbox, a failure is recorded in the
// report: it may have left a replication slot behind, which retains WAL.
func (b *bencher) dropOutbox(ctx context.Context, o outboxTarget, tail bool) {
	err := o.drop(context.WithoutCancel(ctx))
	if err != nil && tail {
		b.report.Errors = append(b.report.Errors, "dropping a tailed outbox (check pg_replication_slots for a slot left behind): "+err.Error())
	}
}

// prepareRelays builds n txoutbox relays, each with connections of its own
// to the store and the broker, as relays in processes of their own have.
func (b *bencher) prepareRelays(ctx context.Context, o outboxTarget, t topicTarget, n int, obs outbox.Observer) (*running, error) {
	r := &running{failed: make(chan error, 1), timings: newTimings()}
	for i := range n {
		st, closeStore, err := o.relayStore(ctx)
		if err != nil {
			r.stop()
			return nil, err
		}
		r.closers = append(r.closers, closeStore)
		pub, closePub, err := t.publisher(ctx)
		if err != nil {
			r.stop()
			return nil, err
		}
		r.closers = append(r.closers, closePub)
		cfg := b.cfg.Relay
		cfg.Owner = fmt.Sprintf("bench-%s-%d", runID(), i+1)
		cfg.Logger = b.cfg.Logger
		if obs != nil {
			cfg.Observer = obs
		}
		relay, err := outbox.NewRelay(timeStore(st, r.timings), timedPublisher{pub, r.timings}, cfg)
		if err != nil {
			r.stop()
			return nil, err
		}
		r.runs = append(r.runs, relay.Run)
	}
	return r, nil
}

// prepareSimple builds the simple relay: one loop that locks up to 500 of
// the oldest pending records (SELECT … FOR UPDATE SKIP LOCKED), publishes
// them with the broker's own client and waits for every ack, marks them
// delivered and commits; after an empty claim it sleeps SimplePoll. acked,
// when set, learns when each batch was acknowledged.
func (b *bencher) prepareSimple(ctx context.Context, so simpleOutbox, t topicTarget, acked func([]outbox.Message, time.Time)) (*running, error) {
	prod, err := t.producer(ctx)
	if err != nil {
		return nil, err
	}
	r := &running{failed: make(chan error, 1), closers: []func(){prod.close}}
	poll := b.cfg.SimplePoll
	r.runs = append(r.runs, func(ctx context.Context) error {
		for ctx.Err() == nil {
			batch, err := so.claim(ctx, simpleBatchSize)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("simple relay: claim: %w", err)
			}
			msgs := batch.messages()
			if len(msgs) == 0 {
				batch.rollback()
				_ = sleep(ctx, poll)
				continue
			}
			if err := prod.publish(ctx, msgs); err != nil {
				batch.rollback()
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("simple relay: publish: %w", err)
			}
			if acked != nil {
				acked(msgs, time.Now())
			}
			if err := batch.markDelivered(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("simple relay: mark delivered: %w", err)
			}
		}
		return nil
	})
	return r, nil
}

// seenSet counts the distinct IDs a consumer saw.
type seenSet struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	want int
	n    atomic.Int64
	done chan struct{}
}

func newSeenSet(want int) *seenSet {
	return &seenSet{ids: make(map[string]struct{}, want), want: want, done: make(chan struct{})}
}

func (s *seenSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.ids[id]; dup {
		return
	}
	s.ids[id] = struct{}{}
	s.n.Store(int64(len(s.ids)))
	if len(s.ids) == s.want {
		close(s.done)
	}
}

func (s *seenSet) count() int { return int(s.n.Load()) }

// latency writes business transactions of one event each at rate events
// per second for LatencyDuration, with one relay (txoutbox's, or the simple
// relay) running, and measures from each commit to the broker's
// acknowledgement of its event.
func (b *bencher) latency(ctx context.Context, s storeTarget, br brokerTarget, evRate int, relay string, name string) (LatencyResult, error) {
	c := b.cfg
	res := LatencyResult{Relay: relay, Rate: evRate}
	simple, tail := relay == RelaySimple, relay == RelayTail
	writers := min(max(evRate/100, 8), 32)
	o, err := b.newOutbox(ctx, s, tag("latency"), writers, tail)
	if err != nil {
		return res, err
	}
	defer b.dropOutbox(ctx, o, tail)
	t, err := br.newTopic(ctx, tag("latency"))
	if err != nil {
		return res, err
	}
	defer t.drop(context.WithoutCancel(ctx)) //nolint:errcheck // best effort

	commits, acks := newStamps(), newStamps()
	var run *running
	if simple {
		so, err := o.simple()
		if err != nil {
			return res, err
		}
		run, err = b.prepareSimple(ctx, so, t, func(msgs []outbox.Message, at time.Time) {
			for _, m := range msgs {
				acks.put(m.ID, at, 0)
			}
		})
		if err != nil {
			return res, err
		}
	} else if run, err = b.prepareRelays(ctx, o, t, 1, ackObserver{acks}); err != nil {
		return res, err
	}
	defer run.stop()
	reads := newStamps() // tail: when each record came out of the log
	if tail {
		run.timings.onLogRead = func(recs []outbox.LogRecord, at time.Time) {
			for _, r := range recs {
				reads.put(r.ID, at, 0)
			}
		}
	}
	run.start(ctx)
	if tail {
		// The writers start once the relay streams from the slot: the
		// connection is not what the latency measures.
		if err := run.holding(ctx); err != nil {
			return res, err
		}
	}

	total := int(float64(evRate) * c.LatencyDuration.Seconds())
	warm := int(float64(evRate) * c.LatencyWarmup.Seconds())
	interval := time.Second / time.Duration(evRate)
	stopProfile := b.profile(name)
	defer stopProfile()
	start := time.Now().Add(100 * time.Millisecond) // the relay's listener connects meanwhile
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr error
	var once sync.Once
	stopWatch := b.progress.watch(250*time.Millisecond, func() {
		b.progress.update("%s committed, %s acknowledged", number(float64(commits.len())), number(float64(acks.len())))
	})
	defer stopWatch()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					if sleep(ctx, d) != nil {
						return
					}
				}
				msg := outbox.Message{ID: outbox.NewID(), Topic: t.name(), Key: keyOf(i, c.Keys), Payload: b.payload}
				if err := o.business(ctx, []outbox.Message{msg}, c.Notify); err != nil {
					failures.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				commits.put(msg.ID, time.Now(), i)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if n := failures.Load(); n > int64(total)/100 {
		return res, fmt.Errorf("%d of %d transactions failed, the first with: %w", n, total, firstErr)
	}
	// Wait for the acknowledgements still on their way.
	deadline := time.Now().Add(30 * time.Second)
	for acks.len() < commits.len() && time.Now().Before(deadline) {
		select {
		case err := <-run.failed:
			return res, err
		default:
		}
		if sleep(ctx, 5*time.Millisecond) != nil {
			return res, ctx.Err()
		}
	}
	run.stop()
	if err := tailed(tail, run.timings); err != nil {
		return res, err
	}
	if run.timings != nil {
		res.Breakdown = run.timings.breakdown()
	}

	var lat, readLat []float64
	var last time.Time
	commits.each(func(id string, committed time.Time, i int) {
		if committed.After(last) {
			last = committed
		}
		acked, ok := acks.get(id)
		if !ok {
			res.Lost++
			return
		}
		if i < warm {
			return
		}
		lat = append(lat, max(0, ms(acked.Sub(committed))))
		if read, ok := reads.get(id); ok {
			readLat = append(readLat, max(0, ms(read.Sub(committed))))
		}
	})
	slices.Sort(lat)
	if len(readLat) > 0 {
		slices.Sort(readLat)
		res.LogReadP50, res.LogReadP99 = quantile(readLat, 0.50), quantile(readLat, 0.99)
	}
	res.Samples = len(lat)
	res.Achieved = rate(commits.len(), last.Sub(start))
	res.P50, res.P99, res.P999 = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 0.999)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	return res, nil
}

// stamps maps event IDs to a time (commit or acknowledgement).
type stamps struct {
	mu sync.Mutex
	m  map[string]stamp
}

type stamp struct {
	at time.Time
	i  int
}

func newStamps() *stamps { return &stamps{m: make(map[string]stamp)} }

func (s *stamps) put(id string, at time.Time, i int) {
	s.mu.Lock()
	if _, dup := s.m[id]; !dup {
		s.m[id] = stamp{at, i}
	}
	s.mu.Unlock()
}

func (s *stamps) get(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[id]
	return st.at, ok
}

func (s *stamps) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *stamps) each(fn func(id string, at time.Time, i int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, st := range s.m {
		fn(id, st.at, st.i)
	}
}

// ackObserver records when the relay's publisher returned for each
// delivered record: the broker had acknowledged it by then.
type ackObserver struct{ acks *stamps }

func (ackObserver) ObserveRead(outbox.ReadEvent)  {}
func (ackObserver) ObserveLanes(outbox.LaneEvent) {}

func (o ackObserver) ObserveBatch(ev outbox.BatchEvent) {
	for i, out := range ev.Outcomes {
		if out.Status == outbox.Delivered {
			o.acks.put(ev.Records[i].ID, ev.PublishedAt, 0)
		}
	}
}
