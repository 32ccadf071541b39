package ui

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Bounds of the dead-letter list: the store lists dead letters in pages
// and has no filters, so the console filters what it scans, and scans at
// most deadScan of them per page view.
const (
	deadPage  = 500
	deadScan  = 10000
	deadShown = 200
)

// deadFilter is what the list's form asks for.
type deadFilter struct {
	Topic, Error, Older, Newer string
	older, newer               time.Duration
}

func parseDeadFilter(q url.Values) (deadFilter, error) {
	f := deadFilter{Topic: strings.TrimSpace(q.Get("topic")), Error: strings.TrimSpace(q.Get("error")),
		Older: strings.TrimSpace(q.Get("older")), Newer: strings.TrimSpace(q.Get("newer"))}
	var err error
	if f.Older != "" {
		if f.older, err = time.ParseDuration(f.Older); err != nil {
			return f, fmt.Errorf("older than %q: give a duration such as 10m or 2h", f.Older)
		}
	}
	if f.Newer != "" {
		if f.newer, err = time.ParseDuration(f.Newer); err != nil {
			return f, fmt.Errorf("newer than %q: give a duration such as 10m or 2h", f.Newer)
		}
	}
	return f, nil
}

func (f deadFilter) match(d outbox.DeadLetter, now time.Time) bool {
	age := now.Sub(d.DeadAt)
	return (f.Topic == "" || strings.Contains(strings.ToLower(d.Topic), strings.ToLower(f.Topic))) &&
		(f.Error == "" || strings.Contains(strings.ToLower(d.LastError), strings.ToLower(f.Error))) &&
		(f.older == 0 || age >= f.older) &&
		(f.newer == 0 || age <= f.newer)
}

type deadListData struct {
	Available bool
	Filter    deadFilter
	Problem   string
	Message   string
	Letters   []outbox.DeadLetter
	Scanned   int
	Matched   int
	More      bool // the scan stopped at deadScan
}

func (s *Server) deadList(w http.ResponseWriter, r *http.Request) {
	d := deadListData{Available: s.dead != nil, Message: r.URL.Query().Get("msg")}
	if s.dead == nil {
		s.render(w, r, http.StatusOK, "dead", "Dead letters", d)
		return
	}
	f, err := parseDeadFilter(r.URL.Query())
	d.Filter = f
	if err != nil {
		d.Problem = err.Error()
		s.render(w, r, http.StatusBadRequest, "dead", "Dead letters", d)
		return
	}
	now := time.Now()
	var afterSeq int64
	var afterID string
	for d.Scanned < deadScan {
		page, err := s.dead.ListDead(r.Context(), outbox.ListDeadParams{AfterSeq: afterSeq, AfterID: afterID, Limit: deadPage})
		if err != nil {
			d.Problem = "Cannot list the dead letters: " + err.Error()
			break
		}
		for _, l := range page {
			if f.match(l, now) {
				d.Matched++
				if len(d.Letters) < deadShown {
					d.Letters = append(d.Letters, l)
				}
			}
		}
		d.Scanned += len(page)
		if len(page) < deadPage {
			break
		}
		afterSeq, afterID = page[len(page)-1].Seq, page[len(page)-1].ID
		d.More = d.Scanned >= deadScan
	}
	s.render(w, r, http.StatusOK, "dead", "Dead letters", d)
}

type letterData struct {
	Letter  outbox.DeadLetter
	Hex     bool
	IsText  bool   // the payload reads as text
	Text    string // payload as text, when it is text and asked for
	HexDump string
}

func (s *Server) deadShow(w http.ResponseWriter, r *http.Request) {
	if s.dead == nil {
		s.fail(w, r, http.StatusNotFound, "This store keeps no dead letters the console can read.")
		return
	}
	id := strings.ToLower(r.PathValue("id"))
	list, err := s.dead.ListDead(r.Context(), outbox.ListDeadParams{IDs: []string{id}, Limit: 1})
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "Cannot read the dead letter: "+err.Error())
		return
	}
	if len(list) == 0 {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("%s is not a dead letter (replayed, purged, delivered, or never dead). Look it up under \"Where is my event?\".", id))
		return
	}
	d := letterData{Letter: list[0], Hex: r.URL.Query().Get("as") == "hex", IsText: isText(list[0].Payload)}
	if d.IsText && !d.Hex {
		d.Text = string(d.Letter.Payload)
	} else {
		d.Hex = true
		d.HexDump = hex.Dump(d.Letter.Payload)
	}
	s.render(w, r, http.StatusOK, "letter", "Dead letter "+id, d)
}

// isText reports whether a payload reads as text: valid UTF-8 without
// control characters other than whitespace.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// deadAction is replay or purge.
type deadAction struct {
	Name, Past string
	// Warning says what the action does, in the confirmation.
	Warning string
	do      func(*Server, *http.Request, outbox.SelectDead) (int, error)
}

var deadActions = map[string]deadAction{
	"replay": {Name: "replay", Past: "replayed", Warning: "They will be published again.",
		do: func(s *Server, r *http.Request, sel outbox.SelectDead) (int, error) {
			return s.dead.ReplayDead(r.Context(), sel)
		}},
	"purge": {Name: "purge", Past: "purged", Warning: "They will be deleted for good and never published.",
		do: func(s *Server, r *http.Request, sel outbox.SelectDead) (int, error) {
			return s.dead.PurgeDead(r.Context(), sel)
		}},
}

// selection reads the action and the dead letters a form names.
func (s *Server) selection(w http.ResponseWriter, r *http.Request) (deadAction, []string, bool) {
	if s.dead == nil {
		s.fail(w, r, http.StatusNotFound, "This store keeps no dead letters the console can change.")
		return deadAction{}, nil, false
	}
	act, ok := deadActions[r.PostFormValue("action")]
	if !ok {
		s.fail(w, r, http.StatusBadRequest, "Unknown action: choose replay or purge.")
		return deadAction{}, nil, false
	}
	var ids []string
	for _, id := range r.PostForm["id"] {
		if id = strings.ToLower(strings.TrimSpace(id)); id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		s.fail(w, r, http.StatusBadRequest, "No dead letter selected: tick the ones to "+act.Name+".")
		return deadAction{}, nil, false
	}
	return act, ids, true
}

type confirmData struct {
	Action  deadAction
	IDs     []string
	Waiting *outbox.Waiting // what a replay holds back; nil when unknown or a purge
	Problem string
}

// deadConfirm asks before an action, and says what a replay holds back.
func (s *Server) deadConfirm(w http.ResponseWriter, r *http.Request) {
	act, ids, ok := s.selection(w, r)
	if !ok {
		return
	}
	d := confirmData{Action: act, IDs: ids}
	if act.Name == "replay" {
		if s.backlog == nil {
			d.Problem = "This store cannot tell how many later messages of these keys a replay holds back."
		} else if wt, err := s.backlog.WaitingBehindDead(r.Context(), outbox.SelectDead{IDs: ids}); err != nil {
			d.Problem = "Cannot count the messages a replay holds back: " + err.Error()
		} else {
			d.Waiting = &wt
		}
	}
	s.render(w, r, http.StatusOK, "confirm", "Confirm "+act.Name, d)
}

// deadAct replays or purges, logs who did it, and goes back to the list.
func (s *Server) deadAct(w http.ResponseWriter, r *http.Request) {
	act, ids, ok := s.selection(w, r)
	if !ok {
		return
	}
	n, err := act.do(s, r, outbox.SelectDead{IDs: ids})
	attrs := append(who(r), slog.String("action", act.Name), slog.Int("asked", len(ids)), slog.Int(act.Past, n), slog.Any("ids", ids))
	if err != nil {
		s.log.Error("outbox ui: "+act.Name+" of dead letters failed", append(attrs, slog.Any("error", err))...)
		s.fail(w, r, http.StatusBadGateway, fmt.Sprintf("The %s failed: %v", act.Name, err))
		return
	}
	s.log.Info("outbox ui: "+act.Past+" dead letters", attrs...)
	msg := fmt.Sprintf("%s %d of %d dead letter(s).", strings.ToUpper(act.Past[:1])+act.Past[1:], n, len(ids))
	if n < len(ids) {
		msg += fmt.Sprintf(" %d were no longer dead letters.", len(ids)-n)
	}
	http.Redirect(w, r, "/dead?msg="+url.QueryEscape(msg), http.StatusSeeOther)
}
