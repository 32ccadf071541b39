package ui

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

// sample is one reading of the statistics.
type sample struct {
	Time  time.Time
	Stats outbox.Stats
	Err   error
	// Delivered is the relay's delivered count so far (observer), -1 when
	// no relay reports to this console.
	Delivered int64
}

// topicCounts are the relay's outcomes of one topic so far.
type topicCounts struct {
	Delivered, Retried, Dead int64
	// Rate is the deliveries per second between the last two samples.
	Rate float64
	// Lag is the commit-to-publish lag of the last batch delivered: its
	// PublishedAt minus the oldest CreatedAt among its records of the topic.
	Lag time.Duration

	atSample int64 // Delivered at the last sample
}

// idleAfter is how long after the last page view the console counts as
// unwatched; idleInterval is how often it samples then, to keep a coarse
// history for the charts at a fraction of the cost.
const (
	idleAfter    = 2 * time.Minute
	idleInterval = 30 * time.Second
)

// sampler reads the statistics every interval while someone watches (every
// idleInterval otherwise) and keeps a window of them, and counts what a
// relay in the same process reports. It is the relay's observer when the
// console runs beside one.
type sampler struct {
	stats    outbox.StatsReader
	interval time.Duration
	window   time.Duration
	lastView atomic.Int64 // UnixNano of the last page view
	lastTake time.Time    // of the run loop only

	mu       sync.Mutex
	samples  []sample
	observed bool // a relay reports to us
	topics   map[string]*topicCounts
	// laneMoved is when each lane last moved: a delivery of its records,
	// or, from the statistics, a change of its oldest pending record.
	laneMoved map[int]time.Time
	laneSeen  map[int]outbox.LaneLag // the lane's last lagging reading
	gone      map[string]time.Time   // relays that left, and when
	ownerLast map[string]time.Time   // the last delivery of each observed relay
	delivered int64
}

func newSampler(stats outbox.StatsReader, interval, window time.Duration) *sampler {
	return &sampler{
		stats: stats, interval: interval, window: window,
		topics: map[string]*topicCounts{}, laneMoved: map[int]time.Time{},
		laneSeen: map[int]outbox.LaneLag{}, gone: map[string]time.Time{},
		ownerLast: map[string]time.Time{},
	}
}

func (s *sampler) run(ctx context.Context) {
	if s.stats == nil {
		return
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		if now := time.Now(); s.due(now) {
			s.lastTake = now
			s.take(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// viewed notes that someone looks at the overview.
func (s *sampler) viewed(now time.Time) { s.lastView.Store(now.UnixNano()) }

// due reports whether the loop should sample at now: at every tick while
// a page was viewed within idleAfter, every idleInterval otherwise.
func (s *sampler) due(now time.Time) bool {
	if s.lastTake.IsZero() || now.Sub(time.Unix(0, s.lastView.Load())) < idleAfter {
		return true
	}
	return now.Sub(s.lastTake) >= idleInterval-s.interval/2
}

// take reads the statistics once and records them.
func (s *sampler) take(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, max(s.interval, 5*time.Second))
	st, err := s.stats.Stats(rctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	s.add(sample{Time: time.Now(), Stats: st, Err: err})
}

func (s *sampler) add(smp sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	smp.Delivered = -1
	if s.observed {
		smp.Delivered = s.delivered
	}
	if n := len(s.samples); n > 0 && smp.Time.After(s.samples[n-1].Time) {
		dt := smp.Time.Sub(s.samples[n-1].Time).Seconds()
		for _, c := range s.topics {
			c.Rate = float64(c.Delivered-c.atSample) / dt
			c.atSample = c.Delivered
		}
	}
	if smp.Err == nil {
		s.trackLocked(smp)
	}
	s.samples = append(s.samples, smp)
	cut := 0
	for cut < len(s.samples) && smp.Time.Sub(s.samples[cut].Time) > s.window {
		cut++
	}
	s.samples = slices.Delete(s.samples, 0, cut)
}

// trackLocked notes relays that left and lanes that moved since the
// previous good sample.
func (s *sampler) trackLocked(smp sample) {
	var prev *sample
	for i := len(s.samples) - 1; i >= 0; i-- {
		if s.samples[i].Err == nil {
			prev = &s.samples[i]
			break
		}
	}
	live := map[string]bool{}
	for _, r := range smp.Stats.Relays {
		live[r.Owner] = true
		delete(s.gone, r.Owner)
	}
	if prev != nil {
		for _, r := range prev.Stats.Relays {
			if !live[r.Owner] {
				s.gone[r.Owner] = smp.Time
			}
		}
	}
	for owner, at := range s.gone {
		if smp.Time.Sub(at) > s.window {
			delete(s.gone, owner)
		}
	}
	lagging := map[int]bool{}
	for _, l := range smp.Stats.Lagging {
		lagging[l.Lane] = true
		before, seen := s.laneSeen[l.Lane]
		// A lane that starts lagging counts as moving from then on.
		if !seen || !before.OldestPending.Equal(l.OldestPending) || l.Pending < before.Pending {
			s.laneMoved[l.Lane] = smp.Time
		}
		s.laneSeen[l.Lane] = l
	}
	for lane := range s.laneSeen {
		if !lagging[lane] {
			delete(s.laneSeen, lane)
			s.laneMoved[lane] = smp.Time
		}
	}
}

// ObserveBatch counts the relay's outcomes, per topic and lane.
func (s *sampler) ObserveBatch(e outbox.BatchEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observed = true
	if e.SettleErr != nil {
		return
	}
	lagged := map[string]bool{}
	for i, r := range e.Records {
		if i >= len(e.Outcomes) {
			break
		}
		c := s.topics[r.Topic]
		if c == nil {
			c = &topicCounts{}
			s.topics[r.Topic] = c
		}
		switch e.Outcomes[i].Status {
		case outbox.Delivered:
			c.Delivered++
			if lag := e.PublishedAt.Sub(r.CreatedAt); !lagged[r.Topic] || lag > c.Lag {
				c.Lag = lag
				lagged[r.Topic] = true
			}
			s.delivered++
			s.laneMoved[r.Lane] = e.PublishedAt
			s.ownerLast[e.Owner] = e.PublishedAt
		case outbox.Retried:
			c.Retried++
		case outbox.DeadLettered:
			c.Dead++
			s.laneMoved[r.Lane] = e.PublishedAt
		}
	}
}

// ObserveRead marks the console as fed by a relay.
func (s *sampler) ObserveRead(outbox.ReadEvent) {
	s.mu.Lock()
	s.observed = true
	s.mu.Unlock()
}

// ObserveLanes is not used.
func (s *sampler) ObserveLanes(outbox.LaneEvent) {}

// snapshot is the sampler's state for a page or the JSON endpoint.
type snapshot struct {
	Samples   []sample
	Observed  bool
	Topics    map[string]topicCounts
	LaneMoved map[int]time.Time
	Gone      map[string]time.Time
	OwnerLast map[string]time.Time
}

func (s *sampler) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	topics := make(map[string]topicCounts, len(s.topics))
	for k, v := range s.topics {
		topics[k] = *v
	}
	return snapshot{
		Samples: slices.Clone(s.samples), Observed: s.observed, Topics: topics,
		LaneMoved: maps.Clone(s.laneMoved), Gone: maps.Clone(s.gone),
		OwnerLast: maps.Clone(s.ownerLast),
	}
}

// latest is the last sample, and whether there is one.
func (sn snapshot) latest() (sample, bool) {
	if len(sn.Samples) == 0 {
		return sample{}, false
	}
	return sn.Samples[len(sn.Samples)-1], true
}

// rate is deliveries per second between the last two samples, or -1.
func (sn snapshot) rate() float64 {
	n := len(sn.Samples)
	if n < 2 || sn.Samples[n-1].Delivered < 0 || sn.Samples[n-2].Delivered < 0 {
		return -1
	}
	a, b := sn.Samples[n-2], sn.Samples[n-1]
	if !b.Time.After(a.Time) {
		return -1
	}
	return float64(b.Delivered-a.Delivered) / b.Time.Sub(a.Time).Seconds()
}

// stallAfter is how long a lagging lane may stand still before the
// overview warns about it.
func (s *sampler) stallAfter() time.Duration { return max(30*time.Second, 5*s.interval) }

// warning is one thing the operator should look at.
type warning struct {
	Level string `json:"level"` // "warn" or "error"
	Text  string `json:"text"`
}

// warnings derives what matters from the samples: no relay, lanes held by
// nobody, lanes that do not move, relays gone, a replication slot missing,
// lost or streamed by no relay, a lag that keeps growing.
func (sn snapshot) warnings(stallAfter time.Duration) []warning {
	last, ok := sn.latest()
	if !ok {
		return nil
	}
	if last.Err != nil {
		return []warning{{"error", "Cannot read the statistics: " + last.Err.Error()}}
	}
	var ws []warning
	st := last.Stats
	held := 0
	for _, r := range st.Relays {
		held += r.Lanes
	}
	switch {
	case len(st.Relays) == 0 && st.Pending > 0:
		ws = append(ws, warning{"error", fmt.Sprintf("No live relay: %d pending messages are not being published.", st.Pending)})
	case len(st.Relays) > 0 && held < st.Lanes:
		ws = append(ws, warning{"warn", fmt.Sprintf("%d of %d lanes are held by no relay (a relay just started, left or died; the others take them over when their lease expires).", st.Lanes-held, st.Lanes)})
	}
	for _, owner := range slices.Sorted(maps.Keys(sn.Gone)) {
		ws = append(ws, warning{"warn", fmt.Sprintf("Relay %s is gone since %s (stopped, or died and its lease ran out).", owner, sn.Gone[owner].UTC().Format(time.TimeOnly))})
	}
	stalled := slices.Clone(st.Lagging)
	stalled = slices.DeleteFunc(stalled, func(l outbox.LaneLag) bool {
		moved, ok := sn.LaneMoved[l.Lane]
		return !ok || last.Time.Sub(moved) < stallAfter
	})
	slices.SortFunc(stalled, func(a, b outbox.LaneLag) int { return cmp.Compare(a.Lane, b.Lane) })
	for _, l := range stalled {
		owner := l.Owner
		if owner == "" {
			owner = "nobody"
		}
		ws = append(ws, warning{"warn", fmt.Sprintf("Lane %d has not moved for %s: %d pending, held by %s (a retrying or poison message at its head, or a stuck relay).",
			l.Lane, roundDuration(last.Time.Sub(sn.LaneMoved[l.Lane])), l.Pending, owner)})
	}
	if st.Log != nil {
		if text := app.LogWarning(*st.Log); text != "" {
			level := "warn"
			if st.Log.Missing || st.Log.Lost {
				level = "error"
			}
			ws = append(ws, warning{level, strings.ToUpper(text[:1]) + text[1:]})
		}
	}
	if from, to, span, ok := sn.lagGrowing(); ok {
		ws = append(ws, warning{"warn", fmt.Sprintf("The lag keeps growing: from %s to %s over the last %s.", roundDuration(from), roundDuration(to), roundDuration(span))})
	}
	return ws
}

// lagGrowing reports a lag that rose at every sample of the last 30
// seconds (at least 5 samples), ending above 10 seconds.
func (sn snapshot) lagGrowing() (from, to, span time.Duration, ok bool) {
	n := len(sn.Samples)
	last := sn.Samples[n-1]
	lagAt := func(smp sample) time.Duration {
		if smp.Stats.OldestPending.IsZero() {
			return 0
		}
		return smp.Time.Sub(smp.Stats.OldestPending)
	}
	i := n - 1
	for i > 0 && sn.Samples[i-1].Err == nil && lagAt(sn.Samples[i-1]) < lagAt(sn.Samples[i]) {
		i--
	}
	first := sn.Samples[i]
	span = last.Time.Sub(first.Time)
	if n-i < 5 || span < 30*time.Second || lagAt(last) < 10*time.Second {
		return 0, 0, 0, false
	}
	return lagAt(first), lagAt(last), span, true
}
