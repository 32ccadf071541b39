package ui

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// uuidLike tells an ID from a key in the search box.
var uuidLike = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// keyShown bounds the records of a key the page lists.
const keyShown = 50

type findData struct {
	Available bool
	Query     string
	By        string // "id" or "key"
	Problem   string
	Found     *explained  // the record asked for by ID
	Key       string      // the key whose records are listed
	Records   []explained // the pending and dead records of Key
	Searched  bool
}

// explained is a record with its state in words.
type explained struct {
	outbox.InspectedRecord
	State string // pending, retrying, delivered, dead
	Why   string
}

func (s *Server) find(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := findData{Available: s.inspector != nil, Query: strings.TrimSpace(q.Get("q")), By: q.Get("by")}
	if d.Query == "" || s.inspector == nil {
		s.render(w, r, http.StatusOK, "find", "Where is my event?", d)
		return
	}
	d.Searched = true
	if d.By != "key" && d.By != "id" {
		d.By = "key"
		if uuidLike.MatchString(d.Query) {
			d.By = "id"
		}
	}
	ctx := r.Context()
	d.Key = d.Query
	if d.By == "id" {
		recs, err := s.inspector.Inspect(ctx, outbox.InspectParams{ID: strings.ToLower(d.Query)})
		if err != nil {
			d.Problem = "Cannot look the message up: " + err.Error()
			s.render(w, r, http.StatusBadGateway, "find", "Where is my event?", d)
			return
		}
		if len(recs) == 0 {
			s.render(w, r, http.StatusOK, "find", "Where is my event?", d)
			return
		}
		d.Key = recs[0].Key
		e := explained{InspectedRecord: recs[0]}
		d.Found = &e
		if d.Key == "" {
			d.Found.State, d.Found.Why = s.explain(recs[0], nil)
			s.render(w, r, http.StatusOK, "find", "Where is my event?", d)
			return
		}
	}
	keyed, err := s.inspector.Inspect(ctx, outbox.InspectParams{Key: d.Key, Limit: keyShown})
	if err != nil {
		d.Problem = "Cannot list the messages of the key: " + err.Error()
		s.render(w, r, http.StatusBadGateway, "find", "Where is my event?", d)
		return
	}
	for i, rec := range keyed {
		st, why := s.explain(rec, keyed[:i])
		d.Records = append(d.Records, explained{InspectedRecord: rec, State: st, Why: why})
	}
	if d.Found != nil {
		d.Found.State, d.Found.Why = s.explain(d.Found.InspectedRecord, before(keyed, d.Found.Seq))
	}
	s.render(w, r, http.StatusOK, "find", "Where is my event?", d)
}

// before returns the records of keyed written before seq.
func before(keyed []outbox.InspectedRecord, seq int64) []outbox.InspectedRecord {
	for i, r := range keyed {
		if r.Seq >= seq {
			return keyed[:i]
		}
	}
	return keyed
}

// explain tells the state of rec, given the pending and dead records of
// its key written before it (earlier).
func (s *Server) explain(rec outbox.InspectedRecord, earlier []outbox.InspectedRecord) (state, why string) {
	now := time.Now()
	switch {
	case !rec.DeliveredAt.IsZero():
		return "delivered", fmt.Sprintf("The broker acknowledged it %s (kept because the relay retains delivered messages).", ago(rec.DeliveredAt))
	case !rec.DeadAt.IsZero():
		return "dead", fmt.Sprintf("Dead-lettered %s after %d attempt(s): %s. Later messages of its key carry on unless the relay runs with --strict-order; replay it from the dead letters once the cause is fixed.",
			ago(rec.DeadAt), rec.Attempts, rec.LastError)
	}
	for i := len(earlier) - 1; i >= 0; i-- {
		e := earlier[i]
		if e.DeliveredAt.IsZero() && e.DeadAt.IsZero() {
			return "waiting", fmt.Sprintf("Waits behind %s, an earlier pending message of its key (per-key order: one message of a key at a time).", e.ID)
		}
	}
	if len(earlier) > 0 && !earlier[len(earlier)-1].DeadAt.IsZero() && rec.Attempts == 0 {
		return "pending", fmt.Sprintf("An earlier message of its key, %s, is a dead letter. If the relay runs with --strict-order, this one waits until that one is replayed or purged; if not, the relay holding lane %d publishes it at its next read.",
			earlier[len(earlier)-1].ID, rec.Lane)
	}
	switch {
	case rec.NotBefore.After(now):
		return "retrying", fmt.Sprintf("Attempt %d failed: %s. Next attempt %s (at %s); later messages of its key wait for it.",
			rec.Attempts, rec.LastError, ago(rec.NotBefore), rec.NotBefore.UTC().Format(time.TimeOnly))
	case rec.Attempts > 0:
		return "retrying", fmt.Sprintf("Attempt %d failed: %s. Due again now; the relay holding lane %d publishes it at its next read.", rec.Attempts, rec.LastError, rec.Lane)
	case rec.LastError != "":
		return "pending", fmt.Sprintf("Replayed from the dead letters (it failed with: %s); the relay holding lane %d publishes it at its next read.", rec.LastError, rec.Lane)
	}
	return "pending", fmt.Sprintf("Next in line for its key: %s the relay holding lane %d publishes it at its next read (it may be in flight right now).", s.laneHolder(rec.Lane), rec.Lane)
}

// laneHolder names the relay holding lane, as the last sample saw it.
func (s *Server) laneHolder(lane int) string {
	last, ok := s.sampler.snapshot().latest()
	if !ok || last.Err != nil {
		return ""
	}
	if len(last.Stats.Relays) == 0 {
		return "no relay is live;"
	}
	for _, l := range last.Stats.Lagging {
		if l.Lane == lane && l.Owner != "" {
			return "held by " + l.Owner + ";"
		}
	}
	return ""
}
