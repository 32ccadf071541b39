// Package status is `outbox status`: the backlog, lag, dead letters, lanes
// and relays of an outbox.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Command returns `outbox status`.
func Command(a *app.App) *cobra.Command {
	var (
		store  backend.StoreOptions
		wait   time.Duration
		watch  time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show pending messages, lag, dead letters, lanes and the live relays",
		Long: `status reads the outbox's statistics: messages pending (and how many of them
failed at least once and wait for a retry, or were replayed from the dead
letters and not tried since), the age of the oldest pending message (the relay
lag), dead letters, the same per topic for the topics with pending messages
or dead letters (the oldest backlog first, at most 50), the lane count, each
live relay with the lanes it holds, and the lanes that lag most.

Relays share the outbox by lanes: every message belongs to one lane (a hash of
its key), and each live relay holds a fair share of them. A relay is live from
its start to its stop, idle or not; when it dies, it stays listed until its
lease (--lease of "outbox relay") runs out, and then the other relays take its
lanes over. Lanes held by nobody have no relay to publish them: no relay runs,
or one just died.

The lagging lanes are those whose oldest pending message is oldest, with the
relay that holds each. One lane lagging alone points at a slow or failing key
(its messages wait for a retry of the first); all lanes lagging point at the
relays or the broker.

When the outbox has a replication slot (the log-tailing mode of PostgreSQL,
migrate and relay with --tail, or a slot that mode left behind), status
shows it: the relay that streams from it (the others are standbys), how far
its confirmed position is behind the end of the WAL in bytes and in seconds
(the seconds need a role with pg_read_all_stats), and the WAL it keeps. A
slot that no relay streams from keeps all the WAL written since, until a
relay takes it or PostgreSQL gives it up at max_slot_wal_keep_size, losing
the messages in it: status warns about it. With --tail (as the relays run),
status also warns when the slot is missing: writers fail, or, if they found
it before it was dropped or lost in a failover, write messages that nobody
reads.

--json prints the same numbers with stable field names; --watch refreshes
them (one JSON document per line with --json).`,
		Example: `  outbox status --store postgres://app@db:5432/app
  outbox status --json
  outbox status --watch 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch < 0 {
				return app.Usagef("%s: must not be negative", a.Source("watch"))
			}
			st, err := a.OpenStore(cmd.Context(), store, "status")
			if err != nil {
				return err
			}
			defer st.Close()
			sr, err := st.Stats()
			if err != nil {
				return err
			}
			if watch > 0 {
				return watchLoop(cmd.Context(), a, st.Display, sr, watch, asJSON)
			}
			var stats outbox.Stats
			err = a.Retry(cmd.Context(), "read the statistics of "+st.Display, wait, func(ctx context.Context) error {
				var err error
				stats, err = sr.Stats(ctx)
				return err
			})
			if err != nil {
				return err
			}
			r := NewReport(st.Display, stats, time.Now())
			if asJSON {
				return a.WriteJSON(r)
			}
			r.WriteText(a.Stdout)
			return nil
		},
	}
	store.AddFlags(cmd.Flags())
	store.AddTailFlag(cmd.Flags())
	app.AddWaitFlag(cmd.Flags(), &wait)
	cmd.Flags().DurationVar(&watch, "watch", 0, "refresh every interval (e.g. 2s) until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON with stable field names")
	return cmd
}

// Report is what status prints. Its JSON field names are stable.
type Report struct {
	// Time is when the statistics were read.
	Time time.Time `json:"time"`
	// Store is the outbox, secrets hidden.
	Store string `json:"store"`
	// Pending counts messages not yet delivered and not dead.
	Pending int64 `json:"pending"`
	// Retrying counts pending messages with an attempt counted since they
	// were written or replayed: they failed, or were in flight when their
	// relay died.
	Retrying int64 `json:"retrying"`
	// Replayed counts pending messages replayed from the dead letters and
	// not tried since (they keep the error that dead-lettered them).
	Replayed int64 `json:"replayed"`
	// Dead counts dead letters.
	Dead int64 `json:"dead"`
	// OldestPending is the enqueue time of the oldest pending message,
	// null when none is pending.
	OldestPending *time.Time `json:"oldest_pending"`
	// LagSeconds is Time minus OldestPending, 0 when none is pending.
	LagSeconds float64 `json:"lag_seconds"`
	// Lanes is the lane count of the outbox.
	Lanes int `json:"lanes"`
	// Relays lists the live relays, most lanes first.
	Relays []Relay `json:"relays"`
	// Lagging lists the lanes with pending messages, the oldest pending
	// message first (at most 10).
	Lagging []LaneLag `json:"lagging"`
	// Topics lists the topics with pending messages or dead letters: those
	// with pending messages first, the oldest pending message first, then
	// the most dead letters first (at most 50).
	Topics []Topic `json:"topics"`
	// Log is the replication slot of the log-tailing mode, null when the
	// outbox has none.
	Log *app.Log `json:"log"`
	// Error is set, and the numbers are zero, when a --watch refresh could
	// not read the statistics.
	Error string `json:"error,omitempty"`
}

// Relay is one live relay.
type Relay struct {
	Owner string `json:"owner"`
	// Lanes counts the lanes it holds.
	Lanes int `json:"lanes"`
	// LeaseUntil is when its membership ends unless it renews it.
	LeaseUntil time.Time `json:"lease_until"`
}

// LaneLag is the backlog of one lane.
type LaneLag struct {
	Lane int `json:"lane"`
	// Owner is the relay holding the lane, empty when none does.
	Owner   string `json:"owner"`
	Pending int64  `json:"pending"`
	// OldestPending is the enqueue time of its oldest pending message.
	OldestPending time.Time `json:"oldest_pending"`
	// LagSeconds is the report's Time minus OldestPending.
	LagSeconds float64 `json:"lag_seconds"`
}

// Topic is the backlog and the dead letters of one topic.
type Topic struct {
	Topic   string `json:"topic"`
	Pending int64  `json:"pending"`
	// OldestPending is the enqueue time of its oldest pending message,
	// null when none is pending.
	OldestPending *time.Time `json:"oldest_pending"`
	// LagSeconds is the report's Time minus OldestPending, 0 when none is
	// pending.
	LagSeconds float64 `json:"lag_seconds"`
	Dead       int64   `json:"dead"`
}

// NewReport builds the report of stats read at now.
func NewReport(store string, s outbox.Stats, now time.Time) Report {
	r := Report{
		Time:     now.UTC(),
		Store:    store,
		Pending:  s.Pending,
		Retrying: s.Retrying,
		Replayed: s.Replayed,
		Dead:     s.Dead,
		Lanes:    s.Lanes,
		Relays:   []Relay{},
		Lagging:  []LaneLag{},
		Topics:   []Topic{},
	}
	if !s.OldestPending.IsZero() {
		t := s.OldestPending.UTC()
		r.OldestPending = &t
		r.LagSeconds = max(0, now.Sub(t).Seconds())
	}
	for _, rl := range s.Relays {
		r.Relays = append(r.Relays, Relay{Owner: rl.Owner, Lanes: rl.Lanes, LeaseUntil: rl.Until.UTC()})
	}
	for _, l := range s.Lagging {
		r.Lagging = append(r.Lagging, LaneLag{Lane: l.Lane, Owner: l.Owner, Pending: l.Pending,
			OldestPending: l.OldestPending.UTC(), LagSeconds: max(0, now.Sub(l.OldestPending).Seconds())})
	}
	for _, ts := range s.Topics {
		t := Topic{Topic: ts.Topic, Pending: ts.Pending, Dead: ts.Dead}
		if !ts.OldestPending.IsZero() {
			oldest := ts.OldestPending.UTC()
			t.OldestPending = &oldest
			t.LagSeconds = max(0, now.Sub(oldest).Seconds())
		}
		r.Topics = append(r.Topics, t)
	}
	r.Log = app.NewLog(s.Log)
	return r
}

// Text limits: relays named on the relays line, lagging lanes listed.
const (
	shownRelays  = 4
	shownLagging = 5
	shownTopics  = 10
)

// WriteText writes the report for people.
func (r Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "store\t%s\n", r.Store)
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.Error)
		_ = tw.Flush()
		return
	}
	fmt.Fprintf(tw, "pending\t%d\t(retrying %d, replayed %d)\n", r.Pending, r.Retrying, r.Replayed)
	if r.OldestPending != nil {
		lag := seconds(r.LagSeconds)
		fmt.Fprintf(tw, "lag\t%s\t(oldest pending enqueued %s)\n", app.RoundDuration(lag), r.OldestPending.Format(time.RFC3339))
	} else {
		fmt.Fprintf(tw, "lag\t0s\t(nothing pending)\n")
	}
	fmt.Fprintf(tw, "dead letters\t%d\n", r.Dead)
	held := 0
	for _, rl := range r.Relays {
		held += rl.Lanes
	}
	switch free := r.Lanes - held; {
	case free <= 0:
		fmt.Fprintf(tw, "lanes\t%d\n", r.Lanes)
	case len(r.Relays) == 0:
		fmt.Fprintf(tw, "lanes\t%d\t(held by nobody)\n", r.Lanes)
	default:
		fmt.Fprintf(tw, "lanes\t%d\t(%d held by nobody: a relay just started or died)\n", r.Lanes, free)
	}
	fmt.Fprintf(tw, "relays\t%d\t%s\n", len(r.Relays), r.relayList())
	r.writeLog(tw)
	_ = tw.Flush()
	r.writeLogWarning(w)
	r.writeTopics(w)
	if len(r.Lagging) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  LAGGING LANE\tOWNER\tPENDING\tOLDEST\n")
	for _, l := range r.Lagging[:min(len(r.Lagging), shownLagging)] {
		owner := l.Owner
		if owner == "" {
			owner = "(nobody)"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\n", l.Lane, owner, l.Pending, app.RoundDuration(seconds(l.LagSeconds)))
	}
	_ = tw.Flush()
	if n := len(r.Lagging) - shownLagging; n > 0 {
		fmt.Fprintf(w, "  … and %d more lagging lanes (--json lists them)\n", n)
	}
}

// writeLog writes the lines of the replication slot, if any.
func (r Report) writeLog(tw io.Writer) {
	l := r.Log
	switch {
	case l == nil:
		return
	case l.Missing:
		fmt.Fprintf(tw, "slot\t%s\t(missing)\n", l.Slot)
		return
	case l.Holder == "":
		fmt.Fprintf(tw, "slot\t%s\t(no relay streams from it)\n", l.Slot)
	default:
		fmt.Fprintf(tw, "slot\t%s\t(streamed by %s)\n", l.Slot, l.Holder)
	}
	lag := "unknown"
	if l.LagSeconds != nil {
		lag = app.RoundDuration(seconds(*l.LagSeconds)).String()
	}
	fmt.Fprintf(tw, "slot lag\t%s\t(%s)\n", app.FormatBytes(l.LagBytes), lag)
	fmt.Fprintf(tw, "WAL retained\t%s\n", app.FormatBytes(l.RetainedBytes))
}

// writeLogWarning warns about a replication slot that loses or keeps what
// it should not.
func (r Report) writeLogWarning(w io.Writer) {
	if l := r.Log; l != nil {
		if text := app.LogWarning(outbox.LogStats(*l)); text != "" {
			fmt.Fprintf(w, "\nwarning: %s\n", text)
		}
	}
}

// writeTopics writes the table of the topics with a backlog or dead
// letters, if any.
func (r Report) writeTopics(w io.Writer) {
	if len(r.Topics) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  TOPIC\tPENDING\tLAG\tDEAD\n")
	for _, t := range r.Topics[:min(len(r.Topics), shownTopics)] {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\n", t.Topic, t.Pending, app.RoundDuration(seconds(t.LagSeconds)), t.Dead)
	}
	_ = tw.Flush()
	if n := len(r.Topics) - shownTopics; n > 0 {
		fmt.Fprintf(w, "  … and %d more topics (--json lists them)\n", n)
	}
}

// relayList names the live relays and their lanes, on the relays line:
// "(host-a 128 lanes, host-b 128 lanes)".
func (r Report) relayList() string {
	if len(r.Relays) == 0 {
		return "(no live relay: nothing is published)"
	}
	var parts []string
	for _, rl := range r.Relays[:min(len(r.Relays), shownRelays)] {
		unit := "lanes"
		if rl.Lanes == 1 {
			unit = "lane"
		}
		parts = append(parts, fmt.Sprintf("%s %d %s", rl.Owner, rl.Lanes, unit))
	}
	if n := len(r.Relays) - shownRelays; n > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", n))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// clearScreen moves the cursor home and clears a terminal.
const clearScreen = "\x1b[H\x1b[2J"

// watchLoop prints a report every interval until ctx ends. A failed read
// is shown and retried at the next refresh.
func watchLoop(ctx context.Context, a *app.App, store string, sr outbox.StatsReader, every time.Duration, asJSON bool) error {
	tty := a.Terminal(a.Stdout)
	enc := json.NewEncoder(a.Stdout)
	for {
		rctx, cancel := context.WithTimeout(ctx, max(every, 5*time.Second))
		stats, err := sr.Stats(rctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		r := NewReport(store, stats, time.Now())
		if err != nil {
			r = Report{Time: time.Now().UTC(), Store: store, Relays: []Relay{}, Lagging: []LaneLag{}, Topics: []Topic{}, Error: a.Explain(err)}
		}
		switch {
		case asJSON:
			if err := enc.Encode(r); err != nil {
				return err
			}
		default:
			if tty {
				fmt.Fprint(a.Stdout, clearScreen)
			} else {
				fmt.Fprintln(a.Stdout, "---")
			}
			r.WriteText(a.Stdout)
			if tty {
				fmt.Fprintf(a.Stdout, "\nevery %s at %s; Ctrl-C to stop\n", every, r.Time.Local().Format(time.TimeOnly))
			}
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
