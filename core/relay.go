package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Relay moves committed records from a [Store] to a [Publisher]. It leases
// a fair share of the outbox's lanes, reads their pending records in store
// order, publishes them with several batches in flight (never two batches
// with records of one key), and records each outcome (delivered, retry after
// a backoff, dead letter) with one fenced write per batch. Run one relay per
// process, or many on one outbox: they share the lanes between them and
// hand them over when one joins, leaves or dies.
type Relay struct {
	store Store
	pub   Publisher
	cfg   RelayConfig
	log   *slog.Logger

	kick    chan struct{} // wakes the reader: notifications, Notify
	running atomic.Bool

	storeDown  *breaker
	brokerDown *breaker
	topicDown  *topicPauses
}

// Pauses of the relay while the store or the broker fails as a whole, and
// of one topic while the broker cannot take its messages.
const (
	minOutagePause = 200 * time.Millisecond
	maxOutagePause = 15 * time.Second
)

// NewRelay returns a relay from store to pub. It reports a configuration
// error (matching [ErrInvalidConfig]) instead of failing later in Run.
func NewRelay(store Store, pub Publisher, cfg RelayConfig) (*Relay, error) {
	if store == nil || pub == nil {
		return nil, fmt.Errorf("%w: NewRelay needs a store and a publisher", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With(slog.String("relay", cfg.Owner))
	return &Relay{
		store:      store,
		pub:        pub,
		cfg:        cfg,
		log:        log,
		kick:       make(chan struct{}, 1),
		storeDown:  &breaker{what: "store", log: log, base: minOutagePause, limit: maxOutagePause},
		brokerDown: &breaker{what: "broker", log: log, base: minOutagePause, limit: maxOutagePause},
		topicDown:  newTopicPauses(log, minOutagePause, maxOutagePause),
	}, nil
}

// Owner returns the relay's owner identity, as it appears in lane leases.
func (r *Relay) Owner() string { return r.cfg.Owner }

// Config returns the relay's configuration with defaults filled in.
func (r *Relay) Config() RelayConfig { return r.cfg }

// Notify tells the relay that records were just committed, so that it reads
// now instead of at its next poll. Writers that share a process with the
// relay call it after Commit; it never blocks and is a no-op when the relay
// is busy or stopped. Stores that are a [Listener] need no such call.
func (r *Relay) Notify() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run is the state of one call to Run.
type run struct {
	r *Relay

	mu sync.Mutex
	q  *queue

	ready chan struct{} // wakes a worker: records queued, a key freed
	room  chan struct{} // wakes the reader: the queue has room again
	sync  chan struct{} // wakes the lane loop: a drained lane can be released

	// tookAbove maps each lane this run asked TakeLanes for to the epoch
	// it asked at: held by this owner at a later epoch, the lane is this
	// run's, whatever the relay remembers. Only the lane loop uses it.
	tookAbove map[int]int64
}

// signal sends on a wake-up channel of capacity one without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends, then stops gracefully: batches being published
// are finished (within PublishTimeout) and their outcomes recorded, and the
// relay gives its lanes back so that others take them at once. It returns
// nil after a graceful stop, and [ErrRelayRunning] when the relay is
// already running. Failures of the store or broker do not end Run: it logs
// them and retries with backoff. That includes failures that need someone
// to fix them ([ErrSchemaMissing], [ErrAccessDenied], [ErrDatabaseMissing]),
// which it logs as errors that name the cause, so that the relay resumes by
// itself once they are fixed. To stop instead, as `outbox relay` does, give
// the relay an [Observer] that cancels ctx when a ReadEvent or LaneEvent
// error matches one of them.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRelayRunning
	}
	defer r.running.Store(false)

	r.log.Info("outbox: relay starting",
		slog.Int("batch_size", r.cfg.BatchSize), slog.Int("concurrency", r.cfg.Concurrency),
		slog.Duration("poll_interval", r.cfg.PollInterval), slog.Duration("lease", r.cfg.Lease),
		slog.Int("max_attempts", r.cfg.MaxAttempts), slog.Bool("strict_order", r.cfg.StrictOrder))

	rn := &run{
		r:     r,
		q:     newQueue(),
		ready: make(chan struct{}, 1),
		room:  make(chan struct{}, 1),
		sync:  make(chan struct{}, 1),

		tookAbove: make(map[int]int64),
	}
	rn.q.clog = r.cfg.BatchSize
	var wg, workers sync.WaitGroup
	if l, ok := r.store.(Listener); ok {
		wg.Go(func() { r.listen(ctx, l) })
	}
	if t, ok := r.store.(LogTailer); ok {
		wg.Go(func() { r.tail(ctx, t) })
	}
	if c, ok := r.store.(Cleaner); ok && r.cfg.Retention > 0 {
		wg.Go(func() { r.cleanup(ctx, c) })
	}
	lanesDone := make(chan struct{})
	go func() {
		defer close(lanesDone)
		rn.laneLoop(ctx)
	}()
	wg.Go(func() { rn.readLoop(ctx) })
	for range r.cfg.Concurrency {
		workers.Go(func() { rn.work(ctx) })
	}
	workers.Wait()
	<-lanesDone
	rn.leave()
	wg.Wait()
	r.log.Info("outbox: relay stopped")
	return nil
}

// readLoop reads the held lanes into the queue while it has room. Every
// read starts from the head of the lanes and leaves out the records the
// relay already holds (queued or in flight): a record whose transaction
// committed late, below records already read, is found by the very next
// read, before any later record of its key. When a read comes back full
// the next follows at once; otherwise the reader waits for a wake-up or
// its adaptive poll.
func (rn *run) readLoop(ctx context.Context) {
	r := rn.r
	idle := 0
	ahead := r.cfg.BatchSize * max(1, r.cfg.Concurrency/2) // records queued ahead of the workers
	var lastRead time.Time
	for {
		if r.storeDown.wait(ctx) != nil {
			return
		}
		rn.mu.Lock()
		now := time.Now()
		lanes, epochs := rn.q.readable(now)
		full := rn.q.ready(now) >= ahead
		var skipIDs, skipKeys []string
		var skipSeqs []SeqRange
		if len(lanes) > 0 && !full {
			skipIDs, skipSeqs = rn.q.skipped()
			skipKeys = rn.q.heldBack(now, maxSkipKeys)
			rn.q.reading = true
		}
		rn.mu.Unlock()

		if len(lanes) == 0 || full {
			wait := r.cfg.PollInterval
			if full {
				wait = time.Hour
			}
			if !rn.idle(ctx, rn.room, wait) {
				return
			}
			continue
		}
		slices.Sort(lanes)
		lastRead = time.Now()
		recs, err := rn.read(ctx, ReadParams{
			Lanes: lanes, Limit: r.cfg.BatchSize,
			SkipIDs: skipIDs, SkipSeqs: skipSeqs, SkipKeys: skipKeys, StrictOrder: r.cfg.StrictOrder,
		})
		rn.mu.Lock()
		added := rn.q.add(recs, epochs)
		rn.q.reading = false
		clear(rn.q.settledDuring)
		clear(rn.q.deadDuring)
		rn.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.storeDown.failure(err)
			continue
		}
		r.storeDown.success()
		if added > 0 {
			signal(rn.ready)
		}
		if len(recs) == r.cfg.BatchSize {
			idle = 0
			continue // more to read at once
		}
		wait := r.cfg.MinPollInterval
		if added == 0 {
			wait = r.cfg.MinPollInterval << min(idle, 30)
			if wait <= 0 || wait > r.cfg.PollInterval {
				wait = r.cfg.PollInterval
			}
			idle++
		} else {
			idle = 0
		}
		if !rn.idle(ctx, nil, wait) {
			return
		}
		// A wake-up soon after a read waits for the rest of the coalescing
		// window, so that a burst of commits, each waking the relay, costs
		// the store one read (and one settle) rather than one per commit.
		if d := min(r.cfg.MinPollInterval/2, maxCoalesce) - time.Since(lastRead); d > 0 && sleep(ctx, d) != nil {
			return
		}
	}
}

// maxCoalesce bounds the wait of a wake-up that comes soon after a read
// (see readLoop): the longest delay that coalescing adds to an event.
const maxCoalesce = 5 * time.Millisecond

// maxSkipKeys bounds the keys a read leaves out. Past it, the later
// records of the keys held back beyond it are read and queued behind their
// key's head: they cost memory, never order.
const maxSkipKeys = 10_000

// idle waits for a notification, for extra (when not nil), or for wait. It
// reports false when ctx ended.
func (rn *run) idle(ctx context.Context, extra chan struct{}, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-rn.r.kick:
		return true
	case <-extra:
		return true
	case <-t.C:
		return true
	}
}

// read runs one Read. Its timeout is ReadTimeout, and it is not cut short
// when ctx ends only by that: a read changes nothing, so it simply stops.
func (rn *run) read(ctx context.Context, p ReadParams) ([]Record, error) {
	r := rn.r
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	defer cancel()
	start := time.Now()
	recs, err := r.store.Read(cctx, p)
	if err != nil && cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = fmt.Errorf("%w: the read of %d lanes took longer than ReadTimeout (%v): %w", ErrReadTimeout, len(p.Lanes), r.cfg.ReadTimeout, err)
	}
	if obs := r.cfg.Observer; obs != nil && (err == nil || ctx.Err() == nil) {
		// A read cut short because the relay stops is no failure.
		obs.ObserveRead(ReadEvent{Owner: r.cfg.Owner, Records: len(recs), Duration: time.Since(start), Err: err})
	}
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return recs, nil
}

// work publishes batches from the queue until ctx ends.
func (rn *run) work(ctx context.Context) {
	r := rn.r
	for {
		if r.brokerDown.wait(ctx) != nil {
			return
		}
		rn.mu.Lock()
		now := time.Now()
		batch, wake := rn.q.next(r.cfg.BatchSize, now)
		var epochs []Lane
		more := false
		if len(batch) > 0 {
			epochs = rn.q.epochs(batch)
			more = rn.q.queued > 0
		}
		rn.mu.Unlock()
		if len(batch) == 0 {
			wait := r.cfg.PollInterval
			if !wake.IsZero() {
				wait = max(time.Until(wake), time.Millisecond)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-rn.ready:
			case <-t.C:
				if !wake.IsZero() {
					r.Notify() // the key held back is free: read what the reads left out
				}
			}
			t.Stop()
			continue
		}
		if more {
			signal(rn.ready) // let a sibling take the next batch
		}
		signal(rn.room)
		outcomes, settleErr := r.process(ctx, batch, epochs, func() bool { return rn.holds(epochs) })
		rn.mu.Lock()
		if settleErr != nil {
			// The lanes were lost or the relay stops, and the store did
			// not record the outcomes: the records go back to be
			// published again (duplicates at most).
			for i := range outcomes {
				outcomes[i] = Outcome{Status: Released}
			}
		}
		rn.q.settled(batch, outcomes, epochs, r.cfg.StrictOrder, time.Now())
		drained := false
		for _, l := range epochs {
			if h := rn.q.lanes[l.ID]; h != nil && h.draining && h.inflight == 0 {
				drained = true
			}
		}
		rn.mu.Unlock()
		signal(rn.ready)
		signal(rn.room)
		if drained {
			signal(rn.sync)
		}
	}
}

// holds reports whether the relay still holds every lane of epochs at its
// epoch.
func (rn *run) holds(epochs []Lane) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	for _, l := range epochs {
		if h := rn.q.lanes[l.ID]; h == nil || h.epoch != l.Epoch {
			return false
		}
	}
	return true
}

// process publishes one batch and records every outcome in the store, for
// as long as holds reports that the relay holds the batch's lanes. It
// returns the outcomes, and the error of recording them if that failed.
func (r *Relay) process(ctx context.Context, recs []Record, epochs []Lane, holds func() bool) ([]Outcome, error) {
	outcomes := make([]Outcome, len(recs))
	held := make(map[string]bool) // keys with an earlier failure in this batch
	hold := func(key string) {
		if key != "" {
			held[key] = true
		}
	}

	// Topics the broker cannot take now wait out their pause; their
	// records go back to the queue unpublished and uncounted.
	waits, probes := r.topicDown.hold(recs, time.Now())

	msgs := make([]Message, 0, len(recs))
	index := make([]int, 0, len(recs)) // msgs[j] is recs[index[j]]
	for i, rec := range recs {
		wait, paused := waits[rec.Topic]
		switch {
		case ctx.Err() != nil:
			outcomes[i] = Outcome{Status: Released} // stopping: hand it back untried
		case rec.Key != "" && held[rec.Key]:
			outcomes[i] = Outcome{Status: Released}
		case rec.Attempts >= r.cfg.MaxAttempts:
			outcomes[i] = Outcome{Status: DeadLettered, Err: fmt.Errorf(
				"gave up after %d attempts, the last ones lost in flight (a relay died or lost its lanes while publishing it); last error: %s",
				rec.Attempts, orNone(rec.LastError))}
			hold(rec.Key)
		case paused:
			outcomes[i] = Outcome{Status: Released, RetryIn: wait}
			hold(rec.Key)
		default:
			msgs = append(msgs, rec.Message)
			index = append(index, i)
		}
	}

	var results []error
	var publishDuration time.Duration
	if len(msgs) > 0 {
		results, publishDuration = r.publish(ctx, msgs)
	}
	publishedAt := time.Now()

	var outage error
	var failed, delivered int
	var firstErr error
	var topicWaits map[string]time.Duration // topics that failed with ErrTopicUnavailable
	for j, i := range index {
		rec, err := recs[i], results[j]
		if errors.Is(err, ErrUnavailable) {
			outage = err // whatever else the error says, the broker is down: pause
		} else if errors.Is(err, ErrTopicUnavailable) {
			if _, ok := topicWaits[rec.Topic]; !ok {
				if topicWaits == nil {
					topicWaits = make(map[string]time.Duration)
				}
				topicWaits[rec.Topic] = r.topicDown.failure(rec.Topic, err, time.Now(), probing(probes, rec.Topic))
			}
		}
		if rec.Key != "" && held[rec.Key] {
			if err == nil {
				// The broker has it, so it is delivered; but the publisher
				// let it overtake a failed message of its key.
				r.log.Error("outbox: publisher sent a message after an earlier message of its key failed; per-key order is broken",
					slog.String("id", rec.ID), slog.String("key", rec.Key))
				outcomes[i] = Outcome{Status: Delivered}
				delivered++
			} else {
				outcomes[i] = Outcome{Status: Released}
			}
			continue
		}
		switch {
		case err == nil:
			outcomes[i] = Outcome{Status: Delivered}
			delivered++
			continue
		case errors.Is(err, ErrNotAttempted), errors.Is(err, ErrUnavailable):
			// Untried, or the broker is down (which pauses the whole relay
			// below, even if part of the batch was delivered: records of
			// an unreachable partition would otherwise be tried again at
			// once, in a loop).
			outcomes[i] = Outcome{Status: Released}
		case errors.Is(err, ErrTopicUnavailable):
			// The broker is there but cannot take this topic: the record
			// waits out the topic's pause, uncounted, in the store.
			outcomes[i] = Outcome{Status: Released, Err: err, RetryIn: topicWaits[rec.Topic]}
		case errors.Is(err, ErrPermanent) || rec.Attempts+1 >= r.cfg.MaxAttempts:
			outcomes[i] = Outcome{Status: DeadLettered, Err: err}
		default:
			outcomes[i] = Outcome{Status: Retried, Err: err,
				RetryIn: exponential(rec.Attempts+1, r.cfg.MinRetryDelay, r.cfg.MaxRetryDelay)}
		}
		hold(rec.Key)
		if outcomes[i].Status != Released {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}

	r.topicDown.finish(probes, func(topic string) bool {
		for j, i := range index {
			if results[j] == nil && recs[i].Topic == topic {
				return true
			}
		}
		return false
	})
	settleErr := r.settle(ctx, recs, outcomes, epochs)
	for settleErr != nil && holds() && r.storeDown.wait(ctx) == nil {
		// The outcomes are known; only recording them failed (or its
		// reply was lost). Handing the batch back published it again at
		// once, one more duplicate of each record per PublishTimeout while
		// settles failed, and, in strict order, published a key's next
		// record past a dead letter that the store had recorded. Record
		// them again, after the store's pause, for as long as the lanes
		// are held at the batch's epochs: the key stays busy meanwhile.
		settleErr = r.settle(ctx, recs, outcomes, epochs)
	}
	r.report(recs, outcomes, failed, firstErr, settleErr)

	switch {
	case outage != nil:
		r.brokerDown.failure(outage)
	case delivered > 0:
		r.brokerDown.success()
	}
	if obs := r.cfg.Observer; obs != nil {
		obs.ObserveBatch(BatchEvent{
			Owner:           r.cfg.Owner,
			Records:         recs,
			Outcomes:        outcomes,
			PublishDuration: publishDuration,
			PublishedAt:     publishedAt,
			SettleErr:       settleErr,
		})
	}
	return outcomes, settleErr
}

// publish runs one Publish call within PublishTimeout (not cut short when
// ctx ends: the batch's outcomes are recorded, then the relay stops), and
// returns one result per message and how long the call took.
func (r *Relay) publish(ctx context.Context, msgs []Message) ([]error, time.Duration) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	results := r.pub.Publish(pctx, msgs)
	took := time.Since(start)
	if len(results) != len(msgs) {
		err := fmt.Errorf("outbox: publisher returned %d results for %d messages", len(results), len(msgs))
		r.log.Error("outbox: publisher broke its contract; treating the batch as failed", slog.Any("error", err))
		results = make([]error, len(msgs))
		for j := range results {
			results[j] = err
		}
	}
	return results, took
}

// settle records the outcomes in the store with one Settle call, retried
// until PublishTimeout runs out. Released records need no write: they stay
// pending in the store and queued in the relay.
func (r *Relay) settle(ctx context.Context, recs []Record, outcomes []Outcome, epochs []Lane) error {
	p := SettleParams{Lanes: epochs, Retain: r.cfg.Retention != 0}
	for i, o := range outcomes {
		id := recs[i].ID
		switch o.Status {
		case Delivered:
			p.Delivered = append(p.Delivered, id)
		case Retried:
			p.Retries = append(p.Retries, Retry{ID: id, Error: o.Err.Error(), Delay: o.RetryIn})
		case DeadLettered:
			p.Dead = append(p.Dead, Failure{ID: id, Error: o.Err.Error()})
		}
	}
	if len(p.Delivered)+len(p.Retries)+len(p.Dead) == 0 {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	err := retryUntil(sctx, func(c context.Context) error { return r.store.Settle(c, p) })
	if err != nil {
		err = fmt.Errorf("settle (%d delivered, %d retries, %d dead): %w", len(p.Delivered), len(p.Retries), len(p.Dead), err)
		r.log.Error("outbox: could not record outcomes; trying again while the relay holds their lanes (the records stay pending until then)",
			slog.Any("error", err))
		r.storeDown.failure(err)
	}
	return err
}

// retryUntil calls do until it succeeds or ctx ends.
func retryUntil(ctx context.Context, do func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := do(ctx)
		if err == nil {
			return nil
		}
		if sleep(ctx, exponential(attempt, 50*time.Millisecond, 2*time.Second)) != nil {
			return err
		}
	}
}

// report logs a batch: one line for its failures, one per dead letter.
func (r *Relay) report(recs []Record, outcomes []Outcome, failed int, firstErr, settleErr error) {
	if failed > 0 {
		r.log.Warn("outbox: publish failed",
			slog.Int("failed", failed), slog.Int("batch", len(recs)), slog.Any("first_error", firstErr))
	}
	for i, o := range outcomes {
		if o.Status == DeadLettered && settleErr == nil {
			r.log.Error("outbox: message dead-lettered",
				slog.String("id", recs[i].ID), slog.String("topic", recs[i].Topic), slog.String("key", recs[i].Key),
				slog.Int("attempts", recs[i].Attempts), slog.Any("error", o.Err))
		}
	}
}

// listen turns store notifications into wake-ups, restarting the listener
// with backoff when it fails.
func (r *Relay) listen(ctx context.Context, l Listener) {
	fails := 0
	for ctx.Err() == nil {
		ch, err := l.Listen(ctx)
		if errors.Is(err, ErrUnsupported) {
			r.log.Info("outbox: the store cannot send notifications here; polling only", slog.Any("reason", err))
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return // stopping, not a failure of the notifications
			}
			fails++
			wait := exponential(fails, time.Second, time.Minute)
			r.log.Warn("outbox: store notifications unavailable; polling meanwhile",
				slog.Duration("retry_in", wait), slog.Any("error", err))
			if sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		fails = 0
		for range ch {
			r.Notify()
		}
		r.Notify() // something may have been committed while reconnecting
		if sleep(ctx, minOutagePause) != nil {
			return
		}
	}
}

// cleanup deletes delivered records older than Retention, in bounded batches.
func (r *Relay) cleanup(ctx context.Context, c Cleaner) {
	t := time.NewTicker(r.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		total := 0
		for ctx.Err() == nil {
			n, err := c.Cleanup(ctx, CleanupParams{OlderThan: r.cfg.Retention, Limit: r.cfg.CleanupBatch})
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("outbox: cleanup failed; trying again next interval", slog.Any("error", err))
				}
				break
			}
			total += n
			if n < r.cfg.CleanupBatch {
				break
			}
		}
		if total > 0 {
			r.log.Debug("outbox: deleted delivered records", slog.Int("count", total))
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none recorded"
	}
	return s
}
