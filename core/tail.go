package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

// LogStream is a relay's hold on an outbox's log. Next is called from one
// goroutine; the other methods may be called concurrently, with it and
// with each other.
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
	// the hold: it writes nothing and fails, with an error matching
	// [ErrLostLog], when the stream no longer holds the log. The relay
	// parks again after other failures, as long as it runs.
	Park(ctx context.Context, recs []Parked) error
	// ParkedKeys returns the keys that have pending records in the table
	// and, with strictOrder, the keys of dead letters: a record of such a
	// key that comes from the log is parked behind them, not published.
	ParkedKeys(ctx context.Context, strictOrder bool) ([]string, error)
	// Renew says that the relay is alive. A stream not renewed within
	// TailParams.Lease lets the log go, so that a standby takes it over
	// from a relay that froze (paused, stuck in a call) while holding it.
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

// stream publishes from a held log until it breaks or ctx ends.
//
// Records are dealt to Concurrency workers by key (keyless ones by ID), so
// that all records of a key go through one worker, which publishes its
// batches one at a time in log order: per-key order holds with several
// batches in flight. A worker is the only writer of parked records of its
// keys while the relay holds the log, so the keys it parked, refreshed from
// the table between its batches, tell exactly which records of the log must
// queue behind the table. The log is acknowledged up to the last
// transaction whose records every worker finished (delivered or parked).
func (r *Relay) stream(ctx context.Context, s LogStream) error {
	parked, err := r.parkedKeys(ctx, s)
	if err != nil {
		return err
	}
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

	n := r.cfg.Concurrency
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	acks := &ackTracker{s: s}
	room := make(chan struct{}, 2*n) // chunks in flight
	queues := make([]*logQueue, n)
	var wg sync.WaitGroup
	for w := range n {
		queues[w] = &logQueue{wake: make(chan struct{}, 1)}
		mine := make(map[string]bool)
		for k := range parked {
			if LaneOf(k, "", n) == w {
				mine[k] = true
			}
		}
		wg.Go(func() {
			if err := r.logWorker(sctx, s, w, n, queues[w], mine, acks, room); err != nil {
				cancel(err)
			}
		})
	}
	defer func() {
		for _, q := range queues {
			q.close()
		}
		wg.Wait()
	}()

	for {
		select {
		case room <- struct{}{}:
		case <-sctx.Done():
			return streamErr(ctx, sctx)
		}
		// One read takes what Concurrency batches of BatchSize hold: the
		// records a polling relay keeps in flight.
		recs, err := s.Next(sctx, r.cfg.BatchSize*n)
		if err != nil {
			if sctx.Err() != nil {
				return streamErr(ctx, sctx)
			}
			return err
		}
		parts := make([][]LogRecord, n)
		for _, rec := range recs {
			w := LaneOf(rec.Key, rec.ID, n)
			parts[w] = append(parts[w], rec)
		}
		chunk := acks.add(recs, n)
		for w, part := range parts {
			if len(part) == 0 {
				acks.done(chunk, room) // nothing for this worker
				continue
			}
			queues[w].push(logPart{chunk: chunk, recs: part})
		}
	}
}

// streamErr is why a stream stopped: its worker's error, or ctx's.
func streamErr(ctx, sctx context.Context) error {
	if err := context.Cause(sctx); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// logPart is one worker's share of a chunk of the log (possibly empty: the
// worker still reports it done, so the chunk completes).
type logPart struct {
	chunk int64
	recs  []LogRecord
}

// logQueue holds the parts dealt to one worker, oldest first.
type logQueue struct {
	mu     sync.Mutex
	parts  []logPart
	closed bool
	wake   chan struct{}
}

func (q *logQueue) push(p logPart) {
	q.mu.Lock()
	q.parts = append(q.parts, p)
	q.mu.Unlock()
	signal(q.wake)
}

func (q *logQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.wake)
}

// take removes the oldest parts, as many as fit in limit records (at least
// one), and reports whether the queue is closed.
func (q *logQueue) take(limit int) ([]logPart, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, total := 0, 0
	for n < len(q.parts) && (n == 0 || total+len(q.parts[n].recs) <= limit) {
		total += len(q.parts[n].recs)
		n++
	}
	taken := q.parts[:n:n]
	q.parts = q.parts[n:]
	return taken, q.closed
}

// logWorker publishes the parts dealt to it, in order, until its queue
// closes or ctx ends. When it comes back from a publication it takes
// every part queued meanwhile as one batch (up to BatchSize×Concurrency
// records), so a record waits for at most the publication in progress,
// not for one per part before it. parked holds its keys (those dealt to
// worker w of n) that wait in the table; it refreshes them from the table
// every PollInterval while any is parked.
func (r *Relay) logWorker(ctx context.Context, s LogStream, w, n int, q *logQueue, parked map[string]bool, acks *ackTracker, room chan struct{}) error {
	refreshed := time.Now()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if len(parked) > 0 && time.Since(refreshed) >= r.cfg.PollInterval {
			all, err := r.parkedKeys(ctx, s)
			if err != nil {
				return err
			}
			clear(parked)
			for k := range all {
				if LaneOf(k, "", n) == w {
					parked[k] = true
				}
			}
			refreshed = time.Now()
		}
		parts, closed := q.take(r.cfg.BatchSize * n)
		if len(parts) == 0 {
			if closed {
				return nil
			}
			var timeout <-chan time.Time
			var t *time.Timer
			if len(parked) > 0 {
				t = time.NewTimer(max(r.cfg.PollInterval-time.Since(refreshed), 0))
				timeout = t.C
			}
			select {
			case <-q.wake:
			case <-timeout:
			case <-ctx.Done():
			}
			if t != nil {
				t.Stop()
			}
			continue
		}
		recs := parts[0].recs
		if len(parts) > 1 {
			recs = nil
			for _, p := range parts {
				recs = append(recs, p.recs...)
			}
		}
		if err := r.publishLog(ctx, s, recs, parked); err != nil {
			return err
		}
		for _, p := range parts {
			acks.done(p.chunk, room)
		}
	}
}

// ackTracker acknowledges the log in order: a chunk is done when each
// worker finished its part, and the log is acknowledged up to the last
// checkpoint of the longest run of done chunks from the oldest.
type ackTracker struct {
	s      LogStream
	mu     sync.Mutex
	next   int64 // ID of the next chunk
	chunks []ackChunk
}

type ackChunk struct {
	id         int64
	parts      int    // workers yet to finish
	checkpoint uint64 // the chunk's last checkpoint, zero when none
}

func (a *ackTracker) add(recs []LogRecord, parts int) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	c := ackChunk{id: a.next, parts: parts, checkpoint: lastCheckpoint(recs)}
	a.chunks = append(a.chunks, c)
	return c.id
}

func (a *ackTracker) done(id int64, room chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.chunks {
		if a.chunks[i].id == id {
			a.chunks[i].parts--
		}
	}
	var pos uint64
	for len(a.chunks) > 0 && a.chunks[0].parts == 0 {
		pos = max(pos, a.chunks[0].checkpoint)
		a.chunks = a.chunks[1:]
		<-room
	}
	if pos != 0 {
		a.s.Ack(pos)
	}
}

// lastCheckpoint is the last non-zero Checkpoint of recs, or zero.
func lastCheckpoint(recs []LogRecord) uint64 {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Checkpoint != 0 {
			return recs[i].Checkpoint
		}
	}
	return 0
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

// publishLog publishes one batch of the log and parks what cannot go now;
// the caller acknowledges it. Records of parked keys are parked behind them
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
				wait := r.topicDown.failure(rec.Topic, err, time.Now(), probing(probes, rec.Topic))
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
	for len(toPark) > 0 {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
		parkErr = retryUntil(pctx, func(c context.Context) error { return s.Park(c, toPark) })
		cancel()
		if parkErr != nil && !errors.Is(parkErr, ErrLostLog) && ctx.Err() == nil {
			// The store is slow or down, and the stream still holds the
			// log: park again rather than give the batch up, which the
			// next holder would publish again, broker-accepted records and
			// all (duplicates without a crash).
			r.log.Error("outbox: could not park records in the table; trying again while the relay holds the log",
				slog.Int("records", len(toPark)), slog.Any("error", parkErr))
			r.storeDown.failure(parkErr)
			if r.storeDown.wait(ctx) == nil {
				continue
			}
		}
		if parkErr != nil {
			parkErr = fmt.Errorf("parking %d records in the table: %w", len(toPark), parkErr)
		} else {
			r.Notify() // the lanes relay takes them from here
		}
		break
	}
	r.report(rs, outcomes, failed, firstErr, parkErr)
	if obs := r.cfg.Observer; obs != nil {
		obs.ObserveBatch(BatchEvent{
			Owner: r.cfg.Owner, Records: rs, Outcomes: outcomes,
			PublishDuration: publishDuration, PublishedAt: time.Now(), SettleErr: parkErr,
		})
	}
	return parkErr // when set, not acknowledged: the next holder publishes them again
}
