package ui

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"
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
	Warnings   []warning  `json:"warnings"`
	Series     series     `json:"series"`
	Interval   float64    `json:"interval_seconds"`
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

type topicRow struct {
	Topic     string  `json:"topic"`
	Delivered int64   `json:"delivered"`
	Rate      float64 `json:"rate"` // delivered per second between the last two samples
	// LagSeconds is the commit-to-publish lag of its last delivered batch.
	LagSeconds float64 `json:"lag_seconds"`
	Retried    int64   `json:"retried"`
	Dead       int64   `json:"dead"`
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
	d := overviewData{Available: s.stats != nil, Interval: s.cfg.Interval.Seconds(), Observed: sn.Observed,
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
	for topic, c := range sn.Topics {
		d.Topics = append(d.Topics, topicRow{Topic: topic, Delivered: c.Delivered, Rate: c.Rate, LagSeconds: c.Lag.Seconds(), Retried: c.Retried, Dead: c.Dead})
	}
	slices.SortFunc(d.Topics, func(a, b topicRow) int { return cmp.Compare(a.Topic, b.Topic) })
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

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "overview", "Overview", s.overviewData())
}

func (s *Server) overviewJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.overviewData())
}
