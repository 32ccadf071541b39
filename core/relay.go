package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Relay moves committed records from a [Store] to a [Publisher]: it claims a
// batch, publishes it, and records each outcome (delivered, retry after a
// backoff, dead letter, or released untried). Run one relay per process, or
// many on one outbox: the store's claim keeps them from sharing a key.
type Relay struct {
	store Store
	pub   Publisher
	cfg   RelayConfig
	log   *slog.Logger

	kick    chan struct{} // wakes idle workers: notifications, Notify, full batches
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
		kick:       make(chan struct{}, cfg.Concurrency),
		storeDown:  &breaker{what: "store", log: log, base: minOutagePause, limit: maxOutagePause},
		brokerDown: &breaker{what: "broker", log: log, base: minOutagePause, limit: maxOutagePause},
		topicDown:  newTopicPauses(log, minOutagePause, maxOutagePause),
	}, nil
}

// Owner returns the relay's owner identity, as it appears in leases.
func (r *Relay) Owner() string { return r.cfg.Owner }

// Config returns the relay's configuration with defaults filled in.
func (r *Relay) Config() RelayConfig { return r.cfg }

// Notify tells the relay that records were just committed, so that it claims
// now instead of at its next poll. Writers that share a process with the
// relay call it after Commit; it never blocks and is a no-op when the relay
// is busy or stopped. Stores that are a [Listener] need no such call.
func (r *Relay) Notify() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends, then stops gracefully: batches being published
// are finished (within PublishTimeout) and their outcomes recorded; records
// claimed but not yet published are released. It returns nil after a
// graceful stop, and [ErrRelayRunning] when the relay is already running.
// Failures of the store or broker do not end Run: it logs them and retries
// with backoff. That includes failures that need someone to fix them
// ([ErrSchemaMissing], [ErrAccessDenied], [ErrDatabaseMissing]), which it
// logs as errors that name the cause, so that the relay resumes by itself
// once they are fixed. To stop instead, as `outbox relay` does, give the
// relay an [Observer] whose ObserveClaim cancels ctx when ClaimEvent.Err
// matches one of them.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRelayRunning
	}
	defer r.running.Store(false)

	r.log.Info("outbox: relay starting",
		slog.Int("batch_size", r.cfg.BatchSize), slog.Int("concurrency", r.cfg.Concurrency),
		slog.Duration("poll_interval", r.cfg.PollInterval), slog.Duration("lease", r.cfg.Lease),
		slog.Int("max_attempts", r.cfg.MaxAttempts), slog.Bool("strict_order", r.cfg.StrictOrder))

	var wg sync.WaitGroup
	if l, ok := r.store.(Listener); ok {
		wg.Go(func() { r.listen(ctx, l) })
	}
	if c, ok := r.store.(Cleaner); ok && r.cfg.Retention >= 0 {
		wg.Go(func() { r.cleanup(ctx, c) })
	}
	for range r.cfg.Concurrency {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Wait()
	r.log.Info("outbox: relay stopped")
	return nil
}

// work is one claim-publish-settle loop. Every worker polls when idle, so
// that a worker busy with a slow batch never leaves new records unseen.
func (r *Relay) work(ctx context.Context) {
	idle := 0 // consecutive empty claims, for the adaptive poll
	for {
		if r.storeDown.wait(ctx) != nil || r.brokerDown.wait(ctx) != nil {
			return
		}
		recs, err := r.claim(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return // stopping: the failure needs no pause (an Observer may have stopped the relay for it)
			}
			r.storeDown.failure(err)
			continue
		}
		r.storeDown.success()
		if len(recs) == 0 {
			if !r.idle(ctx, idle) {
				return
			}
			idle++
			continue
		}
		idle = 0
		if len(recs) == r.cfg.BatchSize {
			r.Notify() // there is probably more: let a sibling claim too
		}
		r.process(ctx, recs)
	}
}

// claim runs one Claim. It is not cut short when ctx ends, so that a claim
// the store commits is never lost to a cancelled read of its result.
func (r *Relay) claim(ctx context.Context) ([]Record, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	recs, err := r.store.Claim(cctx, ClaimParams{
		Owner:       r.cfg.Owner,
		Limit:       r.cfg.BatchSize,
		Lease:       r.cfg.Lease,
		StrictOrder: r.cfg.StrictOrder,
	})
	if obs := r.cfg.Observer; obs != nil {
		obs.ObserveClaim(ClaimEvent{Owner: r.cfg.Owner, Claimed: len(recs), Duration: time.Since(start), Err: err})
	}
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return recs, nil
}

// idle waits for a wake-up or its adaptive poll timer: MinPollInterval,
// doubling with every empty claim up to PollInterval. It reports false when
// ctx ended.
func (r *Relay) idle(ctx context.Context, idleRounds int) bool {
	wait := r.cfg.MinPollInterval << min(idleRounds, 30)
	if wait <= 0 || wait > r.cfg.PollInterval {
		wait = r.cfg.PollInterval
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-r.kick:
		return true
	case <-t.C:
		return true
	}
}

// process publishes one claimed batch and records every outcome.
func (r *Relay) process(ctx context.Context, recs []Record) {
	outcomes := make([]Outcome, len(recs))
	held := make(map[string]bool) // keys with an earlier failure in this batch
	hold := func(key string) {
		if key != "" {
			held[key] = true
		}
	}

	// Topics the broker cannot take now wait out their pause; their
	// records go back unpublished, uncounted, and unclaimable until then.
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
		case rec.Attempts > r.cfg.MaxAttempts:
			outcomes[i] = Outcome{Status: DeadLettered, Err: fmt.Errorf(
				"gave up after %d claims without a recorded outcome (a relay may have crashed or lost its lease while publishing it); last error: %s",
				rec.Attempts-1, orNone(rec.LastError))}
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
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
		start := time.Now()
		results = r.pub.Publish(pctx, msgs)
		publishDuration = time.Since(start)
		cancel()
		if len(results) != len(msgs) {
			err := fmt.Errorf("outbox: publisher returned %d results for %d messages", len(results), len(msgs))
			r.log.Error("outbox: publisher broke its contract; treating the batch as failed", slog.Any("error", err))
			results = make([]error, len(msgs))
			for j := range results {
				results[j] = err
			}
		}
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
				topicWaits[rec.Topic] = r.topicDown.failure(rec.Topic, err, time.Now())
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
			// an unreachable partition would otherwise be claimed again at
			// once, in a loop).
			outcomes[i] = Outcome{Status: Released}
		case errors.Is(err, ErrTopicUnavailable):
			// The broker is there but cannot take this topic: the record
			// waits out the topic's pause, uncounted, in the store.
			outcomes[i] = Outcome{Status: Released, Err: err, RetryIn: topicWaits[rec.Topic]}
		case errors.Is(err, ErrPermanent) || rec.Attempts >= r.cfg.MaxAttempts:
			outcomes[i] = Outcome{Status: DeadLettered, Err: err}
		default:
			outcomes[i] = Outcome{Status: Retried, Err: err,
				RetryIn: exponential(rec.Attempts, r.cfg.MinRetryDelay, r.cfg.MaxRetryDelay)}
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
	settleErr := r.settle(ctx, recs, outcomes)
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
}

// settle records the outcomes in the store: deliveries first, so that the
// next record of a key becomes claimable only after its predecessor is
// recorded. Each step is retried until PublishTimeout runs out; past that
// the records stay leased and are published again when the lease expires.
func (r *Relay) settle(ctx context.Context, recs []Record, outcomes []Outcome) error {
	owner := r.cfg.Owner
	var deliveredIDs []string
	var released []ReleaseParams // one per distinct delay
	var retries []Retry
	var dead []Failure
	for i, o := range outcomes {
		id := recs[i].ID
		switch o.Status {
		case Delivered:
			deliveredIDs = append(deliveredIDs, id)
		case Retried:
			retries = append(retries, Retry{ID: id, Error: o.Err.Error(), Delay: o.RetryIn})
		case DeadLettered:
			dead = append(dead, Failure{ID: id, Error: o.Err.Error()})
		case Released:
			released = addRelease(released, owner, id, o.RetryIn)
		}
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	type step struct {
		what string
		n    int
		do   func(context.Context) error
	}
	steps := []step{
		{"mark delivered", len(deliveredIDs), func(c context.Context) error {
			return r.store.MarkDelivered(c, MarkDeliveredParams{Owner: owner, IDs: deliveredIDs})
		}},
		{"schedule retry", len(retries), func(c context.Context) error {
			return r.store.ScheduleRetry(c, ScheduleRetryParams{Owner: owner, Retries: retries})
		}},
		{"dead-letter", len(dead), func(c context.Context) error {
			return r.store.DeadLetter(c, DeadLetterParams{Owner: owner, Letters: dead})
		}},
	}
	for _, p := range released {
		steps = append(steps, step{"release", len(p.IDs), func(c context.Context) error {
			return r.store.Release(c, p)
		}})
	}
	var firstErr error
	for _, s := range steps {
		if s.n == 0 {
			continue
		}
		if err := retryUntil(sctx, s.do); err != nil {
			err = fmt.Errorf("%s (%d records): %w", s.what, s.n, err)
			r.log.Error("outbox: could not record outcomes; the records will be published again when their lease expires",
				slog.Any("error", err))
			r.storeDown.failure(err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// addRelease adds the record id to the release of its delay. The records of
// one paused topic share a delay, so a batch has few distinct ones.
func addRelease(released []ReleaseParams, owner, id string, delay time.Duration) []ReleaseParams {
	for i := range released {
		if released[i].Delay == delay {
			released[i].IDs = append(released[i].IDs, id)
			return released
		}
	}
	return append(released, ReleaseParams{Owner: owner, IDs: []string{id}, Delay: delay})
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
