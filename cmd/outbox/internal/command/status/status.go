// Package status is `outbox status`: the backlog, lag, dead letters and
// relays of an outbox.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
		Short: "Show pending messages, lag, dead letters and the relays holding leases",
		Long: `status reads the outbox's statistics: messages pending (and how many of them
are leased to a relay right now, i.e. in flight, waiting for a retry, or
replayed from the dead letters and not tried since), the age of the oldest
pending message (the relay lag), dead letters, and each relay holding leases.

Relays are counted from their leases: a relay holds leases only while it
publishes, so an idle relay (nothing pending) is not counted. A relay's
/healthz tells whether it runs.

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
	// Leased counts pending messages leased to a relay now (in flight).
	Leased int64 `json:"leased"`
	// Retrying counts pending messages that failed at least once since
	// they were written or replayed.
	Retrying int64 `json:"retrying"`
	// Replayed counts pending messages replayed from the dead letters and
	// not claimed since (they keep the error that dead-lettered them).
	Replayed int64 `json:"replayed"`
	// Dead counts dead letters.
	Dead int64 `json:"dead"`
	// OldestPending is the enqueue time of the oldest pending message,
	// null when none is pending.
	OldestPending *time.Time `json:"oldest_pending"`
	// LagSeconds is Time minus OldestPending, 0 when none is pending.
	LagSeconds float64 `json:"lag_seconds"`
	// Relays lists the relays holding leases, busiest first. An idle relay
	// holds none, so it is not listed.
	Relays []Relay `json:"relays"`
	// Error is set, and the numbers are zero, when a --watch refresh could
	// not read the statistics.
	Error string `json:"error,omitempty"`
}

// Relay is one relay holding leases.
type Relay struct {
	Owner  string `json:"owner"`
	Leased int64  `json:"leased"`
	// LeaseUntil is the latest expiry among its leases.
	LeaseUntil time.Time `json:"lease_until"`
}

// NewReport builds the report of stats read at now.
func NewReport(store string, s outbox.Stats, now time.Time) Report {
	r := Report{
		Time:     now.UTC(),
		Store:    store,
		Pending:  s.Pending,
		Leased:   s.Leased,
		Retrying: s.Retrying,
		Replayed: s.Replayed,
		Dead:     s.Dead,
		Relays:   []Relay{},
	}
	if !s.OldestPending.IsZero() {
		t := s.OldestPending.UTC()
		r.OldestPending = &t
		r.LagSeconds = max(0, now.Sub(t).Seconds())
	}
	for _, rl := range s.Relays {
		r.Relays = append(r.Relays, Relay{Owner: rl.Owner, Leased: rl.Leased, LeaseUntil: rl.Until.UTC()})
	}
	return r
}

// WriteText writes the report for people.
func (r Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "store\t%s\n", r.Store)
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.Error)
		_ = tw.Flush()
		return
	}
	fmt.Fprintf(tw, "pending\t%d\t(in flight %d, retrying %d, replayed %d)\n", r.Pending, r.Leased, r.Retrying, r.Replayed)
	if r.OldestPending != nil {
		lag := time.Duration(r.LagSeconds * float64(time.Second))
		fmt.Fprintf(tw, "lag\t%s\t(oldest pending enqueued %s)\n", roundDuration(lag), r.OldestPending.Format(time.RFC3339))
	} else {
		fmt.Fprintf(tw, "lag\t0s\t(nothing pending)\n")
	}
	fmt.Fprintf(tw, "dead letters\t%d\n", r.Dead)
	if len(r.Relays) == 0 {
		fmt.Fprintf(tw, "relays\t0\tholding leases (an idle relay holds none)\n")
	} else {
		fmt.Fprintf(tw, "relays\t%d\tholding leases\n", len(r.Relays))
	}
	_ = tw.Flush()
	if len(r.Relays) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  OWNER\tLEASED\tLEASES EXPIRE\n")
	for _, rl := range r.Relays {
		fmt.Fprintf(tw, "  %s\t%d\tin %s\n", rl.Owner, rl.Leased, roundDuration(rl.LeaseUntil.Sub(r.Time)))
	}
	_ = tw.Flush()
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

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
			r = Report{Time: time.Now().UTC(), Store: store, Relays: []Relay{}, Error: a.Explain(err)}
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
