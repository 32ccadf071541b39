package ui

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

// overviewData is the overview, as the page renders it and as
// /api/overview serves it to the page's script.
type overviewData struct {
	Available  bool       `json:"available"`
	Error      string     `json:"error,omitempty"`
	Time       time.Time  `json:"time"`
	Pending    int64      `json:"pending"`
	Retrying   int64      `json:"retrying"`
	Replayed   int64      `json:"replayed"`
	Dead       int64      `json:"dead"`
	LagSeconds float64    `json:"lag_seconds"`
	Rate       *float64   `json:"rate"`     // delivered per second; null without a relay in this process
	Observed   bool       `json:"observed"` // a relay in this process reports to the console
	Lanes      int        `json:"lanes"`
	Relays     []relayRow `json:"relays"`
	Lagging    []laneRow  `json:"lagging"`
	Topics     []topicRow `json:"topics"`
	Log        *logRow    `json:"log"` // the replication slot of the log-tailing mode, null without one
	Warnings   []warning  `json:"warnings"`
	Series     series     `json:"series"`
	Interval   float64    `json:"interval_seconds"`
	MaxTopics  int        `json:"max_topics"` // the most topics the store lists
}

type relayRow struct {
	Owner        string     `json:"owner"`
	Lanes        int        `json:"lanes"`
	LeaseUntil   time.Time  `json:"lease_until"`
	LastDelivery *time.Time `json:"last_delivery"` // known for the relay of this process only
}

type laneRow struct {
	Lane       int     `json:"lane"`
	Owner      string  `json:"owner"`
	Pending    int64   `json:"pending"`
	LagSeconds float64 `json:"lag_seconds"`
	// MovedSecondsAgo is how long ago the lane last moved, as far as the
	// console has seen; null when it has not seen it move.
	MovedSecondsAgo *float64 `json:"moved_seconds_ago"`
}

// topicRow merges the store's figures of a topic (outbox.Stats.Topics:
// its backlog and dead letters) with the outcomes the relay of this process
// reported for it (zero without one).
type topicRow struct {
	Topic   string `json:"topic"`
	Pending int64  `json:"pending"`
	// LagSeconds is the age of its oldest pending record.
	LagSeconds float64 `json:"lag_seconds"`
	Dead       int64   `json:"dead"` // its dead letters in the store
	Delivered  int64   `json:"delivered"`
	Rate       float64 `json:"rate"` // delivered per second between the last two samples
	// PublishLagSeconds is the commit-to-publish lag of its last delivered
	// batch.
	PublishLagSeconds float64 `json:"publish_lag_seconds"`
	Retried           int64   `json:"retried"`
	DeadLettered      int64   `json:"dead_lettered"` // by the relay of this process
}

// logRow is the replication slot that relays stream from in the
// log-tailing mode (outbox.Stats.Log), with a sentence that says it all.
type logRow struct {
	app.Log
	Summary string `json:"summary"`
}

func newLogRow(l outbox.LogStats) *logRow {
	row := logRow{Log: *app.NewLog(&l)}
	switch {
	case l.Missing:
		row.Summary = "Slot " + l.Slot + " is missing."
		return &row
	case l.Holder == "":
		row.Summary = "Slot " + l.Slot + ": no relay streams from it"
	default:
		row.Summary = "Slot " + l.Slot + ": streamed by " + l.Holder
	}
	lag := "unknown"
	if l.LagSeconds != nil {
		lag = roundDuration(time.Duration(*l.LagSeconds * float64(time.Second))).String()
	}
	row.Summary += "; lag " + app.FormatBytes(l.LagBytes) + " (" + lag + "); WAL retained " + app.FormatBytes(l.RetainedBytes) + "."
	return &row
}

// series are the charts' points, oldest first; T in Unix seconds.
type series struct {
	T       []float64  `json:"t"`
	Pending []int64    `json:"pending"`
	Lag     []float64  `json:"lag"`
	Rate    []*float64 `json:"rate"`
}

func (s *Server) overviewData() overviewData {
	s.sampler.viewed(time.Now())
	sn := s.sampler.snapshot()
	d := overviewData{Available: s.stats != nil, Interval: s.cfg.Interval.Seconds(), Observed: sn.Observed, MaxTopics: outbox.MaxStatsTopics,
		Relays: []relayRow{}, Lagging: []laneRow{}, Topics: []topicRow{}, Warnings: sn.warnings(s.sampler.stallAfter())}
	if d.Warnings == nil {
		d.Warnings = []warning{}
	}
	last, ok := sn.latest()
	if !ok {
		return d
	}
	d.Time = last.Time.UTC()
	if last.Err != nil {
		d.Error = last.Err.Error()
	}
	st := last.Stats
	d.Pending, d.Retrying, d.Replayed, d.Dead, d.Lanes = st.Pending, st.Retrying, st.Replayed, st.Dead, st.Lanes
	if !st.OldestPending.IsZero() {
		d.LagSeconds = max(0, last.Time.Sub(st.OldestPending).Seconds())
	}
	if r := sn.rate(); r >= 0 {
		d.Rate = &r
	}
	for _, r := range st.Relays {
		row := relayRow{Owner: r.Owner, Lanes: r.Lanes, LeaseUntil: r.Until.UTC()}
		if t, ok := sn.OwnerLast[r.Owner]; ok {
			row.LastDelivery = &t
		}
		d.Relays = append(d.Relays, row)
	}
	for _, l := range st.Lagging {
		row := laneRow{Lane: l.Lane, Owner: l.Owner, Pending: l.Pending, LagSeconds: max(0, last.Time.Sub(l.OldestPending).Seconds())}
		if t, ok := sn.LaneMoved[l.Lane]; ok {
			ago := max(0, last.Time.Sub(t).Seconds())
			row.MovedSecondsAgo = &ago
		}
		d.Lagging = append(d.Lagging, row)
	}
	d.Topics = topicRows(last, sn.Topics)
	if st.Log != nil {
		d.Log = newLogRow(*st.Log)
	}
	var prev *sample
	for i := range sn.Samples {
		smp := &sn.Samples[i]
		if smp.Err != nil {
			continue
		}
		d.Series.T = append(d.Series.T, float64(smp.Time.UnixMilli())/1000)
		d.Series.Pending = append(d.Series.Pending, smp.Stats.Pending)
		lag := 0.0
		if !smp.Stats.OldestPending.IsZero() {
			lag = max(0, smp.Time.Sub(smp.Stats.OldestPending).Seconds())
		}
		d.Series.Lag = append(d.Series.Lag, lag)
		var rate *float64
		if prev != nil && prev.Delivered >= 0 && smp.Delivered >= 0 && smp.Time.After(prev.Time) {
			r := float64(smp.Delivered-prev.Delivered) / smp.Time.Sub(prev.Time).Seconds()
			rate = &r
		}
		d.Series.Rate = append(d.Series.Rate, rate)
		prev = smp
	}
	return d
}

// topicRows merges the store's per-topic figures of the sample with the
// relay's, the oldest backlog first, then the most dead letters, then by
// name.
func topicRows(last sample, relayed map[string]topicCounts) []topicRow {
	rows := make(map[string]*topicRow)
	row := func(topic string) *topicRow {
		r := rows[topic]
		if r == nil {
			r = &topicRow{Topic: topic}
			rows[topic] = r
		}
		return r
	}
	for _, t := range last.Stats.Topics {
		r := row(t.Topic)
		r.Pending, r.Dead = t.Pending, t.Dead
		if !t.OldestPending.IsZero() {
			r.LagSeconds = max(0, last.Time.Sub(t.OldestPending).Seconds())
		}
	}
	for topic, c := range relayed {
		r := row(topic)
		r.Delivered, r.Rate, r.PublishLagSeconds, r.Retried, r.DeadLettered = c.Delivered, c.Rate, c.Lag.Seconds(), c.Retried, c.Dead
	}
	out := make([]topicRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b topicRow) int {
		return cmp.Or(cmp.Compare(min(b.Pending, 1), min(a.Pending, 1)), cmp.Compare(b.LagSeconds, a.LagSeconds),
			cmp.Compare(b.Dead, a.Dead), cmp.Compare(a.Topic, b.Topic))
	})
	return out
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "overview", "Overview", s.overviewData())
}

func (s *Server) overviewJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.overviewData())
}
