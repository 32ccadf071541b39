package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// The backlog and the raw insert are written in transactions of fillPerTx
// rows from fillWriters concurrent writers.
const fillPerTx, fillWriters = 1_000, 4

// storeAlone measures what concerns the store alone: its raw insert rate,
// the enqueue overhead and the cost of table growth.
func (b *bencher) storeAlone(ctx context.Context, s storeTarget, sr *StoreReport) error {
	c := b.cfg
	if c.runs(ScenarioInsert) {
		b.progress.step("%s: raw batched INSERT of %s rows, %d per statement and transaction, %d writers (%d rounds)",
			sr.Kind, number(float64(c.Backlog)), fillPerTx, fillWriters, c.Rounds)
		var m Measure
		var err error
		for range c.Rounds {
			var r float64
			if r, err = b.rawInsert(ctx, s); err != nil {
				break
			}
			m.add(r)
		}
		switch {
		case skip(&sr.Skipped, ScenarioInsert, err):
			b.progress.done("skipped: %s", sr.Skipped[ScenarioInsert])
		case err != nil:
			if err := b.failed(ctx, sr.Kind+" raw insert", err); err != nil {
				return err
			}
		default:
			sr.RawInsert = &m
			b.progress.done("%s rows/s", number(m.Median))
		}
	}
	_, tails := s.(tailTarget)
	for _, tail := range []bool{false, true} {
		scenario, what, failure := ScenarioEnqueue, "", sr.Kind+" enqueue overhead"
		if tail {
			scenario, what, failure = ScenarioTail, " on a tailed outbox (Config.Tail)", failure+", tailed"
		}
		if !c.runs(ScenarioEnqueue) || (tail && (!tails || !c.runs(ScenarioTail))) {
			continue
		}
		b.progress.step("%s: enqueue overhead%s, %d writers, %v per case (%d rounds)", sr.Kind, what, c.Writers, c.EnqueueDuration, c.Rounds)
		res, err := b.enqueue(ctx, s, sr.Kind, tail)
		switch {
		case skip(&sr.Skipped, scenario, err):
			b.progress.done("skipped: %s", sr.Skipped[scenario])
		case err != nil:
			if err := b.failed(ctx, failure, err); err != nil {
				return err
			}
		default:
			if tail {
				sr.TailEnqueue = res
			} else {
				sr.Enqueue = res
			}
			b.progress.done("+1 message: %.2f×, +10 messages: %.2f×", res.Cases[1].Ratio, res.Cases[2].Ratio)
		}
	}
	if c.runs(ScenarioIdle) {
		b.progress.step("%s: an idle relay's store calls, %v on an empty outbox", sr.Kind, c.IdleDuration)
		res, err := b.idle(ctx, s)
		switch {
		case skip(&sr.Skipped, ScenarioIdle, err):
			b.progress.done("skipped: %s", sr.Skipped[ScenarioIdle])
		case err != nil:
			if err := b.failed(ctx, sr.Kind+" idle relay", err); err != nil {
				return err
			}
		default:
			sr.Idle = res
			b.progress.done("%.2f store calls/s (%.2f reads, %.2f lane calls)", res.CallsPerSec, res.ReadsPerSec, res.LanesPerSec)
		}
	}
	if c.runs(ScenarioGrowth) {
		b.progress.step("%s: read + settle with 0 and %s retained delivered records", sr.Kind, number(float64(c.Retained)))
		res, err := b.growth(ctx, s)
		switch {
		case skip(&sr.Skipped, ScenarioGrowth, err):
			b.progress.done("skipped: %s", sr.Skipped[ScenarioGrowth])
		case err != nil:
			if err := b.failed(ctx, sr.Kind+" table growth", err); err != nil {
				return err
			}
		default:
			sr.Growth = res
			b.progress.done("read %.2f ms → %.2f ms (%.2f×), settle %.2f ms → %.2f ms (%.2f×)",
				res.Empty.ReadMs.Median, res.Full.ReadMs.Median, res.ReadRatio, res.Empty.SettleMs.Median, res.Full.SettleMs.Median, res.SettleRatio)
		}
	}
	return nil
}

// enqueue runs business transactions from c.Writers writers: alone, with 1
// and with 10 outbox messages (and, on PostgreSQL, 1 with a NOTIFY in every
// transaction and 1 without any), the cases interleaved round after round
// so that drift hits them alike. A txoutbox relay runs all along, woken as
// the store wakes it, publishing to the in-memory broker: what a service's
// outbox costs is its writes and the relay's reads and settles together.
// With tail, the outbox is tailed (its relay streams the log, which
// decodes every transaction, the business ones alone too), and the cases
// are alone, +1 and +10.
func (b *bencher) enqueue(ctx context.Context, s storeTarget, kind string, tail bool) (*EnqueueResult, error) {
	if kind == "memory" {
		return nil, unsupported("the memory store has no business table to compare with")
	}
	c := b.cfg
	o, err := b.newOutbox(ctx, s, tag("enqueue"), c.Writers, tail)
	if err != nil {
		return nil, err
	}
	defer b.dropOutbox(ctx, o, tail)
	t, err := newMemoryBroker().newTopic(ctx, tag("enqueue"))
	if err != nil {
		return nil, err
	}
	relay := &running{failed: make(chan error, 1)} // none: EnqueueAlone
	if !c.EnqueueAlone {
		if relay, err = b.prepareRelays(ctx, o, t, 1, nil); err != nil {
			return nil, err
		}
	}
	relay.start(ctx)
	defer relay.stop()
	if tail && !c.EnqueueAlone {
		if err := relay.holding(ctx); err != nil {
			return nil, err
		}
	}
	res := &EnqueueResult{Writers: c.Writers, Relay: !c.EnqueueAlone, Cases: []EnqueueCase{
		{Name: "transaction alone"},
		{Name: "+1 message", Messages: 1},
		{Name: "+10 messages", Messages: 10},
	}}
	if kind == "postgres" && !tail {
		for i := range res.Cases[1:] {
			res.Cases[1+i].Notify = NotifyInterval
		}
		res.Cases = append(res.Cases,
			EnqueueCase{Name: "+1 message, a NOTIFY in every transaction (NotifyInterval < 0)", Messages: 1, Notify: NotifyEveryTx},
			EnqueueCase{Name: "+1 message, no NOTIFY (DisableNotify)", Messages: 1, Notify: NotifyNone})
	}
	// A short warm-up: connections, prepared statements, caches.
	for i := range res.Cases {
		if _, err := b.transactions(ctx, o, res.Cases[i], c.EnqueueDuration/5); err != nil {
			return nil, err
		}
	}
	for range c.Rounds {
		for i := range res.Cases {
			r, err := b.transactions(ctx, o, res.Cases[i], c.EnqueueDuration)
			if err != nil {
				return nil, err
			}
			res.Cases[i].TxPerSec.add(r)
		}
	}
	select {
	case err := <-relay.failed:
		return nil, fmt.Errorf("the relay running beside the writers failed: %w", err)
	default:
	}
	if !c.EnqueueAlone {
		relay.stop()
		if err := tailed(tail, relay.timings); err != nil {
			return nil, err
		}
	}
	for i := range res.Cases {
		res.Cases[i].Ratio = ratio(res.Cases[0].TxPerSec.Median, res.Cases[i].TxPerSec.Median)
	}
	return res, nil
}

// idle runs one relay, with the configured settings, on an empty outbox
// and counts its store calls over IdleDuration, starting once the relay
// holds every lane (its first lease round is not what an idle relay costs).
func (b *bencher) idle(ctx context.Context, s storeTarget) (*IdleResult, error) {
	o, err := s.newOutbox(ctx, tag("idle"), 1)
	if err != nil {
		return nil, err
	}
	defer o.drop(context.WithoutCancel(ctx)) //nolint:errcheck // best effort
	t, err := newMemoryBroker().newTopic(ctx, tag("idle"))
	if err != nil {
		return nil, err
	}
	lanes := make(chan struct{}, 1)
	relay, err := b.prepareRelays(ctx, o, t, 1, laneObserver{lanes})
	if err != nil {
		return nil, err
	}
	relay.start(ctx)
	defer relay.stop()
	select {
	case <-lanes:
	case err := <-relay.failed:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	reads0, settles0, lanes0 := relay.timings.calls()
	start := time.Now()
	if err := sleep(ctx, b.cfg.IdleDuration); err != nil {
		return nil, err
	}
	reads, settles, laneCalls := relay.timings.calls()
	elapsed := time.Since(start).Seconds()
	select {
	case err := <-relay.failed:
		return nil, err
	default:
	}
	res := &IdleResult{Seconds: elapsed,
		ReadsPerSec: float64(reads-reads0) / elapsed, LanesPerSec: float64(laneCalls-lanes0) / elapsed}
	res.CallsPerSec = res.ReadsPerSec + res.LanesPerSec + float64(settles-settles0)/elapsed
	return res, nil
}

// laneObserver signals once the relay holds every lane (the bench's
// outboxes have the default lane count).
type laneObserver struct{ took chan struct{} }

func (laneObserver) ObserveRead(outbox.ReadEvent)   {}
func (laneObserver) ObserveBatch(outbox.BatchEvent) {}
func (o laneObserver) ObserveLanes(ev outbox.LaneEvent) {
	if ev.Held >= outbox.DefaultLanes {
		select {
		case o.took <- struct{}{}:
		default:
		}
	}
}

// transactions runs transactions of one case from c.Writers writers for d
// and returns how many committed per second.
func (b *bencher) transactions(ctx context.Context, o outboxTarget, tc EnqueueCase, d time.Duration) (float64, error) {
	var committed atomic.Int64
	var first error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range b.cfg.Writers {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				var msgs []outbox.Message
				if tc.Messages > 0 {
					msgs = b.messages("bench.enqueue", w*1_000_003+n, tc.Messages)
					for i := range msgs {
						msgs[i].Key = msgs[0].Key // one aggregate per transaction
					}
				}
				if err := o.business(ctx, msgs, tc.Notify); err != nil {
					once.Do(func() { first = err })
					return
				}
				committed.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return 0, first
	}
	return rate(int(committed.Load()), elapsed), ctx.Err()
}

// growth times Read and Settle on two outboxes with the same backlog, one
// of which also retains c.Retained delivered records, in alternating
// rounds. One owner holds every lane of both, as a relay alone would.
func (b *bencher) growth(ctx context.Context, s storeTarget) (*GrowthResult, error) {
	c := b.cfg
	batch := b.relay.BatchSize
	pending := batch * c.ReadRounds * c.Rounds
	res := &GrowthResult{Retained: c.Retained, Batch: batch}
	owner := "bench-growth-" + runID()
	type side struct {
		o     outboxTarget
		store outbox.Store
		lanes []outbox.Lane
		ids   []int
		cost  *ReadCost
	}
	var sides []side
	defer func() {
		for _, sd := range sides {
			if sd.store != nil {
				_ = sd.store.ReleaseLanes(context.WithoutCancel(ctx), outbox.ReleaseLanesParams{Owner: owner, Lanes: sd.lanes, Leave: true})
			}
			_ = sd.o.drop(context.WithoutCancel(ctx))
		}
	}()
	for i, retained := range []int{0, c.Retained} {
		o, err := s.newOutbox(ctx, tag("growth"), 4)
		if err != nil {
			return nil, err
		}
		sides = append(sides, side{o: o, cost: []*ReadCost{&res.Empty, &res.Full}[i]})
		b.progress.update("filling %s delivered records", number(float64(retained)))
		if err := o.retain(ctx, retained, c.Keys); err != nil {
			return nil, err
		}
		b.progress.update("filling %s pending records", number(float64(pending)))
		if _, err := b.fill(ctx, o, "bench.growth", pending); err != nil {
			return nil, err
		}
		if err := o.settle(ctx); err != nil {
			return nil, err
		}
		st, closeStore, err := o.relayStore(ctx)
		if err != nil {
			return nil, err
		}
		defer closeStore()
		lanes, err := holdAllLanes(ctx, st, owner)
		if err != nil {
			return nil, err
		}
		sides[i].store, sides[i].lanes = st, lanes
		for _, l := range lanes {
			sides[i].ids = append(sides[i].ids, l.ID)
		}
	}
	for round := range c.Rounds {
		for _, sd := range sides {
			b.progress.update("round %d/%d", round+1, c.Rounds)
			for range c.ReadRounds {
				t0 := time.Now()
				recs, err := sd.store.Read(ctx, outbox.ReadParams{Lanes: sd.ids, Limit: batch})
				if err != nil {
					return nil, err
				}
				t1 := time.Now()
				if len(recs) == 0 {
					return nil, fmt.Errorf("read found nothing in a backlog of %d", pending)
				}
				ids := make([]string, len(recs))
				for i, r := range recs {
					ids[i] = r.ID
				}
				if err := sd.store.Settle(ctx, outbox.SettleParams{Lanes: sd.lanes, Delivered: ids}); err != nil {
					return nil, err
				}
				sd.cost.ReadMs.add(ms(t1.Sub(t0)))
				sd.cost.SettleMs.add(ms(time.Since(t1)))
			}
		}
	}
	res.ReadRatio = ratio(res.Full.ReadMs.Median, res.Empty.ReadMs.Median)
	res.SettleRatio = ratio(res.Full.SettleMs.Median, res.Empty.SettleMs.Median)
	return res, nil
}

// keyLanes returns the lane of each key "key-%06d" of the retained records,
// by key number, among the outboxes' lanes (the stores' default count).
func keyLanes(keys int) []int {
	lanes := make([]int, keys)
	for k := range lanes {
		lanes[k] = outbox.LaneOf(fmt.Sprintf("key-%06d", k), "", outbox.DefaultLanes)
	}
	return lanes
}

// growthLease is the lane lease of the table-growth measurement: longer
// than its rounds, which renew nothing.
const growthLease = time.Hour

// holdAllLanes makes owner a relay of st holding every lane, and returns
// them with their epochs.
func holdAllLanes(ctx context.Context, st outbox.Store, owner string) ([]outbox.Lane, error) {
	view, err := st.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: growthLease})
	if err != nil {
		return nil, err
	}
	want := make([]outbox.Lane, len(view.Lanes))
	for i, l := range view.Lanes {
		want[i] = l.Lane
	}
	taken, err := st.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: growthLease, Lanes: want})
	if err != nil {
		return nil, err
	}
	if len(taken) != len(want) {
		return nil, fmt.Errorf("took %d of the %d lanes of a new outbox", len(taken), len(want))
	}
	return taken, nil
}

// fill enqueues n messages to topic, fillPerTx per transaction from
// fillWriters writers, and returns the rate.
func (b *bencher) fill(ctx context.Context, o outboxTarget, topic string, n int) (float64, error) {
	return b.write(ctx, n, func(msgs []outbox.Message) error { return o.enqueue(ctx, msgs) }, topic)
}

// rawInsert writes the backlog's rows into a plain table the way fill
// enqueues them, and returns the rate: the ceiling of Enqueue.
func (b *bencher) rawInsert(ctx context.Context, s storeTarget) (float64, error) {
	t, err := s.rawTable(ctx)
	if err != nil {
		return 0, err
	}
	defer t.drop(context.WithoutCancel(ctx)) //nolint:errcheck // best effort
	return b.write(ctx, b.cfg.Backlog, func(msgs []outbox.Message) error { return t.insert(ctx, msgs) }, "bench.insert")
}

// write hands n messages to topic to insert, fillPerTx at a time from
// fillWriters writers, and returns the rate.
func (b *bencher) write(ctx context.Context, n int, insert func([]outbox.Message) error, topic string) (float64, error) {
	const perTx, writers = fillPerTx, fillWriters
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				lo := int(next.Add(perTx)) - perTx
				if lo >= n || ctx.Err() != nil {
					return
				}
				if err := insert(b.messages(topic, lo, min(perTx, n-lo))); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return rate(n, time.Since(start)), first
}

// brokerAlone measures the broker's own producer on the backlog.
func (b *bencher) brokerAlone(ctx context.Context, br brokerTarget, rep *BrokerReport) error {
	c := b.cfg
	if !c.runs(ScenarioProduce) {
		return nil
	}
	b.progress.step("%s: the broker's own async producer, %d messages (%d rounds)", rep.Label(), c.Backlog, c.Rounds)
	if rep.Kind == "memory" {
		skip(&rep.Skipped, ScenarioProduce, unsupported("the memory publisher is its own producer"))
		b.progress.done("skipped: %s", rep.Skipped[ScenarioProduce])
		return nil
	}
	var m Measure
	err := func() error {
		for range c.Rounds {
			t, err := br.newTopic(ctx, tag("produce"))
			if err != nil {
				return err
			}
			r, err := func() (float64, error) {
				defer t.drop(context.WithoutCancel(ctx)) //nolint:errcheck // best effort
				p, err := t.producer(ctx)
				if err != nil {
					return 0, err
				}
				defer p.close()
				// Warm up: connection and metadata.
				if err := p.publish(ctx, b.messages(t.name(), 0, 10)); err != nil {
					return 0, err
				}
				msgs := b.messages(t.name(), 0, c.Backlog)
				start := time.Now()
				if err := p.publish(ctx, msgs); err != nil {
					return 0, err
				}
				return rate(len(msgs), time.Since(start)), nil
			}()
			if err != nil {
				return err
			}
			m.add(r)
		}
		return nil
	}()
	if err != nil {
		return b.failed(ctx, rep.Label()+" produce", err)
	}
	rep.Produce = &m
	b.progress.done("%s msg/s", number(m.Median))
	return nil
}
