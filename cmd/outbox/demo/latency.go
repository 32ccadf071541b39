package demo

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// histogram counts durations in logarithmic buckets: 32 per power of two of
// microseconds, so a quantile is read to within about 3%, in constant memory
// however long the run.
type histogram struct {
	counts [64 * subBuckets]uint64
	total  uint64
}

const (
	subBits    = 5
	subBuckets = 1 << subBits
)

func bucketOf(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	if us < 2*subBuckets {
		return int(us)
	}
	shift := bits.Len64(us) - (subBits + 1) // us>>shift is in [32, 64)
	return (shift+1)*subBuckets + int(us>>shift) - subBuckets
}

// bucketValue is the middle of bucket b.
func bucketValue(b int) time.Duration {
	if b < 2*subBuckets {
		return time.Duration(b)*time.Microsecond + time.Microsecond/2
	}
	shift := b/subBuckets - 1
	low := uint64(b%subBuckets+subBuckets) << shift
	return time.Duration(low+(uint64(1)<<shift)/2) * time.Microsecond
}

func (h *histogram) add(d time.Duration) {
	h.counts[min(bucketOf(d), len(h.counts)-1)]++
	h.total++
}

// quantile returns the duration below which a fraction q of the samples
// fall, or 0 without samples.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(h.total))), 1) // nearest rank
	var seen uint64
	for b, n := range h.counts {
		seen += n
		if seen >= rank {
			return bucketValue(b)
		}
	}
	return bucketValue(len(h.counts) - 1)
}

// tracker follows each event from its commit to its first arrival, for the
// progress line and the latency figures. (The ledger keeps the verdict.)
type tracker struct {
	mu        sync.Mutex
	events    map[string]*trace
	committed int
	delivered int // committed events that arrived, counted once
	latency   histogram
}

type trace struct {
	committedAt, arrivedAt time.Time
}

func newTracker() *tracker {
	return &tracker{events: make(map[string]*trace)}
}

// committed records that the transaction of event id committed at t.
func (k *tracker) commit(id string, t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.committed++
	e := k.events[id]
	if e == nil {
		k.events[id] = &trace{committedAt: t}
		return
	}
	// It arrived before the writer got back from Commit: the relay is
	// that quick in-process. Its latency is at most that small.
	e.committedAt = t
	k.delivered++
	k.latency.add(max(e.arrivedAt.Sub(t), 0))
}

// arrive records that event id reached the consumer at t.
func (k *tracker) arrive(id string, t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.events[id]
	switch {
	case e == nil:
		k.events[id] = &trace{arrivedAt: t}
	case !e.arrivedAt.IsZero(): // a duplicate
	default:
		e.arrivedAt = t
		if !e.committedAt.IsZero() {
			k.delivered++
			k.latency.add(t.Sub(e.committedAt))
		}
	}
}

// progress is a snapshot of the tracker.
type progress struct {
	committed, delivered int
	p50, p99             time.Duration
}

func (k *tracker) snapshot() progress {
	k.mu.Lock()
	defer k.mu.Unlock()
	return progress{
		committed: k.committed,
		delivered: k.delivered,
		p50:       k.latency.quantile(0.50),
		p99:       k.latency.quantile(0.99),
	}
}
