package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Breakdown tells where the relays of a drain or a latency measurement
// spent their time: the mean duration of each call, and how many records
// each read returned. Calls overlap (a relay reads while its workers
// publish and settle), so the parts do not add up to the drain's time.
type Breakdown struct {
	// Reads counts the reads that returned records.
	Reads          int64   `json:"reads"`
	RecordsPerRead float64 `json:"records_per_read"`
	ReadMs         float64 `json:"read_ms"`
	EmptyReads     int64   `json:"empty_reads"`
	PublishMs      float64 `json:"publish_ms"`
	SettleMs       float64 `json:"settle_ms"`
	// LogReads counts the reads of the log (LogStream.Next) that returned
	// records, when the relay tailed it; LogReadMs includes the waits for
	// records to commit. Parks counts the calls that parked records of the
	// log in the table (failures), ParkMs their mean duration.
	LogReads          int64   `json:"log_reads,omitempty"`
	RecordsPerLogRead float64 `json:"records_per_log_read,omitempty"`
	LogReadMs         float64 `json:"log_read_ms,omitempty"`
	Parks             int64   `json:"parks,omitempty"`
	ParkMs            float64 `json:"park_ms,omitempty"`
}

// timings accumulates the calls of the relays of one measurement.
type timings struct {
	reads, emptyReads, read, readNs atomic.Int64
	publishes, publishNs            atomic.Int64
	settles, settleNs               atomic.Int64
	laneCalls                       atomic.Int64 // SyncLanes, TakeLanes, ReleaseLanes
	// The log, when a relay tails it: streams opened, Next calls, records
	// and time, Park calls and time.
	tails                           atomic.Int64
	logReads, logRecords, logReadNs atomic.Int64
	parks, parkNs                   atomic.Int64
	holdOnce                        sync.Once
	held                            chan struct{} // closed once a relay holds the log
	// onLogRead, when set before the relays start, learns the records of
	// each read of the log and when it returned.
	onLogRead func(recs []outbox.LogRecord, at time.Time)
}

func newTimings() *timings { return &timings{held: make(chan struct{})} }

// calls returns how many store calls the relays made: reads, settles and
// lane calls.
func (t *timings) calls() (reads, settles, lanes int64) {
	return t.reads.Load(), t.settles.Load(), t.laneCalls.Load()
}

func (t *timings) breakdown() *Breakdown {
	mean := func(ns, n *atomic.Int64) float64 {
		if n.Load() == 0 {
			return 0
		}
		return float64(ns.Load()) / float64(n.Load()) / 1e6
	}
	full := t.reads.Load() - t.emptyReads.Load()
	b := &Breakdown{Reads: full, EmptyReads: t.emptyReads.Load(),
		ReadMs: mean(&t.readNs, &t.reads), PublishMs: mean(&t.publishNs, &t.publishes), SettleMs: mean(&t.settleNs, &t.settles)}
	if full > 0 {
		b.RecordsPerRead = float64(t.read.Load()) / float64(full)
	}
	b.LogReads, b.Parks = t.logReads.Load(), t.parks.Load()
	b.LogReadMs, b.ParkMs = mean(&t.logReadNs, &t.logReads), mean(&t.parkNs, &t.parks)
	if b.LogReads > 0 {
		b.RecordsPerLogRead = float64(t.logRecords.Load()) / float64(b.LogReads)
	}
	return b
}

// timedStore times Read and Settle of a store.
type timedStore struct {
	outbox.Store
	t *timings
}

func (s timedStore) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	start := time.Now()
	recs, err := s.Store.Read(ctx, p)
	s.t.readNs.Add(int64(time.Since(start)))
	s.t.reads.Add(1)
	if len(recs) == 0 {
		s.t.emptyReads.Add(1)
	}
	s.t.read.Add(int64(len(recs)))
	return recs, err
}

func (s timedStore) Settle(ctx context.Context, p outbox.SettleParams) error {
	start := time.Now()
	err := s.Store.Settle(ctx, p)
	s.t.settleNs.Add(int64(time.Since(start)))
	s.t.settles.Add(1)
	return err
}

func (s timedStore) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	s.t.laneCalls.Add(1)
	return s.Store.SyncLanes(ctx, p)
}

func (s timedStore) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	s.t.laneCalls.Add(1)
	return s.Store.TakeLanes(ctx, p)
}

func (s timedStore) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	s.t.laneCalls.Add(1)
	return s.Store.ReleaseLanes(ctx, p)
}

// timedListener is a timedStore over a store that sends wake-ups: the
// relay must still find the capability.
type timedListener struct {
	timedStore
	l outbox.Listener
}

func (s timedListener) Listen(ctx context.Context) (<-chan struct{}, error) { return s.l.Listen(ctx) }

// timedTailer is a timedStore over a store that tails its log
// (pgstore's Config.Tail): without TailLog the relay would poll the table
// and never read the log.
type timedTailer struct {
	timedStore
	lt outbox.LogTailer
}

func (s timedTailer) TailLog(ctx context.Context, p outbox.TailParams) (outbox.LogStream, error) {
	return tailLog(ctx, s.lt, s.t, p)
}

// timedListenerTailer is a timedStore over a store with both capabilities,
// as pgstore has.
type timedListenerTailer struct {
	timedListener
	lt outbox.LogTailer
}

func (s timedListenerTailer) TailLog(ctx context.Context, p outbox.TailParams) (outbox.LogStream, error) {
	return tailLog(ctx, s.lt, s.t, p)
}

// tailLog opens the log of lt and times its stream.
func tailLog(ctx context.Context, lt outbox.LogTailer, t *timings, p outbox.TailParams) (outbox.LogStream, error) {
	ls, err := lt.TailLog(ctx, p)
	if err != nil {
		return nil, err
	}
	t.tails.Add(1)
	if t.held != nil {
		t.holdOnce.Do(func() { close(t.held) })
	}
	return timedStream{LogStream: ls, t: t}, nil
}

// timedStream times Next and Park of a relay's hold on a log.
type timedStream struct {
	outbox.LogStream
	t *timings
}

func (s timedStream) Next(ctx context.Context, max int) ([]outbox.LogRecord, error) {
	start := time.Now()
	recs, err := s.LogStream.Next(ctx, max)
	if len(recs) > 0 {
		if s.t.onLogRead != nil {
			s.t.onLogRead(recs, time.Now())
		}
		s.t.logReadNs.Add(int64(time.Since(start)))
		s.t.logReads.Add(1)
		s.t.logRecords.Add(int64(len(recs)))
	}
	return recs, err
}

func (s timedStream) Park(ctx context.Context, recs []outbox.Parked) error {
	start := time.Now()
	err := s.LogStream.Park(ctx, recs)
	s.t.parkNs.Add(int64(time.Since(start)))
	s.t.parks.Add(1)
	return err
}

// timeStore wraps st so that t learns its calls, keeping the capabilities
// the relay looks for: Listener and LogTailer.
func timeStore(st outbox.Store, t *timings) outbox.Store {
	ts := timedStore{Store: st, t: t}
	l, listens := st.(outbox.Listener)
	lt, tails := st.(outbox.LogTailer)
	switch {
	case listens && tails:
		return timedListenerTailer{timedListener: timedListener{timedStore: ts, l: l}, lt: lt}
	case listens:
		return timedListener{timedStore: ts, l: l}
	case tails:
		return timedTailer{timedStore: ts, lt: lt}
	}
	return ts
}

// timedPublisher times Publish.
type timedPublisher struct {
	outbox.Publisher
	t *timings
}

func (p timedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	start := time.Now()
	res := p.Publisher.Publish(ctx, msgs)
	p.t.publishNs.Add(int64(time.Since(start)))
	p.t.publishes.Add(1)
	return res
}
