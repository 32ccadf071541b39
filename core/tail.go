package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// LogTailer is implemented by stores that can deliver records from the
// database's transaction log instead of from a polled table (PostgreSQL
// with logical decoding: pgstore's Config.Tail). Enqueue then writes each
// message to the log only, in the writer's transaction, and one relay at a
// time holds the log: it publishes the records in commit order as they
// commit, with no read and no write of the table on the way.
//
// The table stays, for what cannot go straight through: a record whose
// publication failed is parked there with its attempt counted and its
// backoff, and the later records of its key are parked behind it, so that
// the log moves on while the relays' lanes retry them (with the same
// retries, dead letters, StrictOrder and replays as a polled outbox).
type LogTailer interface {
	// TailLog waits until the caller holds the outbox's log, then returns
	// its stream. While another relay holds the log, TailLog keeps trying
	// until ctx ends. An error matching [ErrUnsupported] means this store
	// is not configured to tail its log: the relay polls only and does not
	// call TailLog again.
	TailLog(ctx context.Context, p TailParams) (LogStream, error)
}

// TailParams are the arguments of [LogTailer.TailLog].
type TailParams struct {
	// Owner identifies the relay, as in lane leases.
	Owner string
	// Lease is how long the holder may stay silent (paused, partitioned)
	// before the database takes the log from it, so that another relay can
	// take over.
	Lease time.Duration
}

// LogStream is a relay's hold on an outbox's log. Its methods are called
// from one goroutine.
type LogStream interface {
	// Next waits for records committed to the log and returns up to max of
	// them, in commit order (and in write order within a transaction). It
	// returns an error when the stream broke (the relay lost the log, the
	// connection failed) or ctx ended; the records it returned but the
	// relay did not Ack are then read again by the next holder.
	Next(ctx context.Context, max int) ([]LogRecord, error)
	// Ack says that every record up to and including the one whose
	// Checkpoint is pos was delivered or parked, so the log may forget
	// them. It does not block.
	Ack(pos uint64)
	// Park writes recs to the store's table in the order given, fenced by
	// the hold: it writes nothing and fails when the stream no longer holds
	// the log.
	Park(ctx context.Context, recs []Parked) error
	// ParkedKeys returns the keys that have pending records in the table
	// and, with strictOrder, the keys of dead letters: a record of such a
	// key that comes from the log is parked behind them, not published.
	ParkedKeys(ctx context.Context, strictOrder bool) ([]string, error)
	// Renew says that the relay is alive. A stream not renewed within
	// TailParams.Lease lets the log go, so that a standby takes it over
	// from a relay that froze (paused, stuck in a call) while holding it.
	// Unlike the other methods, it may be called from any goroutine.
	Renew()
	// Close gives the log up, so another relay can take it at once.
	Close() error
}

// LogRecord is a record read from an outbox's log.
type LogRecord struct {
	// Record is the message; Seq is its position in the log, Attempts zero.
	Record
	// Checkpoint, when not zero, is the position to [LogStream.Ack] once
	// this record and every record before it are handled: the end of its
	// transaction, set on the transaction's last record.
	Checkpoint uint64
}

// Parked is a record that the relay writes to the table through
// [LogStream.Park].
type Parked struct {
	// Record with the Attempts and LastError it is to keep.
	Record
	// Delay, from the store's clock, before it may be published.
	Delay time.Duration
	// Dead parks it as a dead letter.
	Dead bool
}

// tail holds the store's log whenever it can, and publishes from it, until
// ctx ends. Relays that do not hold the log wait for it (they are the
// standbys), and all relays keep working the lanes, which carry the
// records parked in the table.
func (r *Relay) tail(ctx context.Context, t LogTailer) {
	fails := 0
	for ctx.Err() == nil {
		s, err := t.TailLog(ctx, TailParams{Owner: r.cfg.Owner, Lease: r.cfg.Lease})
		if errors.Is(err, ErrUnsupported) {
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fails++
			wait := exponential(fails, minOutagePause, maxOutagePause)
			level, msg := outageMessage("store", err)
			r.log.Log(ctx, level, msg+" (tailing the log)", slog.Duration("retry_in", wait), slog.Any("error", err))
			if sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		fails = 0
		r.log.Info("outbox: relay holds the log and publishes from it")
		err = r.stream(ctx, s)
		_ = s.Close()
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("outbox: lost the log; taking it again", slog.Any("error", err))
		if sleep(ctx, minOutagePause) != nil {
			return
		}
	}
}

// stream publishes from a held log until it breaks or ctx ends. It is the
// only writer of parked records while it holds the log, so the keys it
// parked, refreshed from the table between batches, tell exactly which
// records of the log must queue behind the table.
func (r *Relay) stream(ctx context.Context, s LogStream) error {
	parked, err := r.parkedKeys(ctx, s)
	if err != nil {
		return err
	}
	refreshed := time.Now()
	// The hold is renewed from a goroutine of its own, like lanes, so that
	// a long Publish does not let it lapse; only a relay that froze does.
	renewed := make(chan struct{})
	defer close(renewed)
	go func() {
		t := time.NewTicker(max(r.cfg.Lease/4, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-renewed:
				return
			case <-t.C:
				s.Renew()
			}
		}
	}()
	for {
		if len(parked) > 0 && time.Since(refreshed) >= r.cfg.PollInterval {
			if parked, err = r.parkedKeys(ctx, s); err != nil {
				return err
			}
			refreshed = time.Now()
		}
		nctx := ctx
		var cancel context.CancelFunc = func() {}
		if len(parked) > 0 {
			// Wake up to refresh the parked keys even when the log is quiet.
			nctx, cancel = context.WithTimeout(ctx, r.cfg.PollInterval)
		}
		// One batch in flight at a time, as large as the records a polling
		// relay keeps in flight (Concurrency batches of BatchSize): the log
		// is one ordered stream, and one call per batch keeps its order.
		recs, err := s.Next(nctx, r.cfg.BatchSize*r.cfg.Concurrency)
		cancel()
		if err != nil {
			if ctx.Err() == nil && nctx.Err() != nil {
				continue // time to refresh
			}
			return err
		}
		if err := r.publishLog(ctx, s, recs, parked); err != nil {
			return err
		}
	}
}

// parkedKeys reads the keys with records in the table, retrying within
// ReadTimeout.
func (r *Relay) parkedKeys(ctx context.Context, s LogStream) (map[string]bool, error) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	defer cancel()
	var keys []string
	err := retryUntil(rctx, func(c context.Context) error {
		var err error
		keys, err = s.ParkedKeys(c, r.cfg.StrictOrder)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the keys parked in the table: %w", err)
	}
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	return set, nil
}

// publishLog publishes one batch of the log, parks what cannot go now, and
// acknowledges the batch. Records of parked keys are parked behind them
// unpublished. A record that fails is parked with its attempt counted and
// its backoff (or as a dead letter), and the later records of its key are
// parked behind it. While the broker is unreachable as a whole, the relay
// pauses and publishes the batch again instead: parking would only copy
// the log into the table.
func (r *Relay) publishLog(ctx context.Context, s LogStream, recs []LogRecord, parked map[string]bool) error {
	outcomes := make([]Outcome, len(recs))
	park := make([]bool, len(recs))
	delay := make([]time.Duration, len(recs))
	fate := make(map[string]OutcomeStatus) // keys that failed in this batch: parked or published again

	rs := make([]Record, len(recs))
	for i := range recs {
		rs[i] = recs[i].Record
	}
	waits, probes := r.topicDown.hold(rs, time.Now())
	var todo []int
	for i, rec := range recs {
		wait, paused := waits[rec.Topic]
		switch {
		case rec.Key != "" && parked[rec.Key]:
			park[i] = true
			outcomes[i] = Outcome{Status: Released}
		case paused:
			park[i], delay[i] = true, wait
			outcomes[i] = Outcome{Status: Released, RetryIn: wait}
			if rec.Key != "" {
				parked[rec.Key] = true
			}
		default:
			todo = append(todo, i)
		}
	}

	var publishDuration time.Duration
	var failed int
	var firstErr error
	for len(todo) > 0 {
		msgs := make([]Message, len(todo))
		for j, i := range todo {
			msgs[j] = recs[i].Message
		}
		results, took := r.publish(ctx, msgs)
		publishDuration += took
		clear(fate)
		var again []int
		var outage error
		delivered := 0
		for j, i := range todo {
			rec, err := recs[i], results[j]
			if f, ok := fate[rec.Key]; ok && rec.Key != "" {
				// An earlier record of its key failed in this call.
				if err == nil {
					r.log.Error("outbox: publisher sent a message after an earlier message of its key failed; per-key order is broken",
						slog.String("id", rec.ID), slog.String("key", rec.Key))
					outcomes[i] = Outcome{Status: Delivered}
				} else if f == Released {
					again = append(again, i)
				} else {
					park[i] = true
					outcomes[i] = Outcome{Status: Released}
					// It waits in the table, even behind a dead letter
					// without StrictOrder: so do its key's later records.
					parked[rec.Key] = true
				}
				continue
			}
			status := Released
			switch {
			case err == nil:
				outcomes[i] = Outcome{Status: Delivered}
				delivered++
				continue
			case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNotAttempted):
				// The broker is down, or the call stopped before this
				// record: publish it again after a pause.
				if errors.Is(err, ErrUnavailable) {
					outage = err
				}
				again = append(again, i)
			case errors.Is(err, ErrTopicUnavailable):
				wait := r.topicDown.failure(rec.Topic, err, time.Now())
				park[i], delay[i] = true, wait
				outcomes[i] = Outcome{Status: Released, Err: err, RetryIn: wait}
				status = Retried // parked like a retry, but uncounted
			case errors.Is(err, ErrPermanent) || rec.Attempts+1 >= r.cfg.MaxAttempts:
				park[i] = true
				outcomes[i] = Outcome{Status: DeadLettered, Err: err}
				status = DeadLettered
			default:
				park[i] = true
				delay[i] = exponential(rec.Attempts+1, r.cfg.MinRetryDelay, r.cfg.MaxRetryDelay)
				outcomes[i] = Outcome{Status: Retried, Err: err, RetryIn: delay[i]}
				status = Retried
			}
			if outcomes[i].Status != Released {
				failed++
				if firstErr == nil {
					firstErr = err
				}
			}
			fate[rec.Key] = status
			if rec.Key != "" && (status == Retried || (status == DeadLettered && r.cfg.StrictOrder)) {
				parked[rec.Key] = true
			}
		}
		r.topicDown.finish(probes, func(topic string) bool {
			for j, i := range todo {
				if results[j] == nil && recs[i].Topic == topic {
					return true
				}
			}
			return false
		})
		probes = nil
		switch {
		case outage != nil:
			r.brokerDown.failure(outage)
		case delivered > 0:
			r.brokerDown.success()
		}
		todo = again
		if len(todo) > 0 {
			if err := r.brokerDown.wait(ctx); err != nil {
				return err // not acknowledged: the next holder publishes them
			}
			if outage == nil && sleep(ctx, minOutagePause) != nil {
				return ctx.Err()
			}
		}
	}

	var toPark []Parked
	for i, rec := range recs {
		if !park[i] {
			continue
		}
		p := Parked{Record: rec.Record, Delay: delay[i]}
		switch outcomes[i].Status {
		case Retried:
			p.Attempts++
			p.LastError = outcomes[i].Err.Error()
		case DeadLettered:
			p.Attempts++
			p.LastError = outcomes[i].Err.Error()
			p.Dead = true
		default:
			if outcomes[i].Err != nil {
				p.LastError = outcomes[i].Err.Error()
			}
		}
		toPark = append(toPark, p)
	}
	var parkErr error
	if len(toPark) > 0 {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
		parkErr = retryUntil(pctx, func(c context.Context) error { return s.Park(c, toPark) })
		cancel()
		if parkErr != nil {
			parkErr = fmt.Errorf("parking %d records in the table: %w", len(toPark), parkErr)
		} else {
			r.Notify() // the lanes relay takes them from here
		}
	}
	r.report(rs, outcomes, failed, firstErr, parkErr)
	if obs := r.cfg.Observer; obs != nil {
		obs.ObserveBatch(BatchEvent{
			Owner: r.cfg.Owner, Records: rs, Outcomes: outcomes,
			PublishDuration: publishDuration, PublishedAt: time.Now(), SettleErr: parkErr,
		})
	}
	if parkErr != nil {
		return parkErr // not acknowledged: the next holder publishes them again
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Checkpoint != 0 {
			s.Ack(recs[i].Checkpoint)
			break
		}
	}
	return nil
}
