package dead

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

// action is replay or purge: something done to selected dead letters.
type action struct {
	name, past string
	// confirmIDs asks for confirmation even for listed IDs (purge).
	confirmIDs bool
	// warning ends the confirmation question.
	warning string
	// holdsBack: the action makes dead letters the first pending messages
	// of their keys again (replay), so it says what waits behind them.
	holdsBack bool
	do        func(context.Context, outbox.DeadLetterStore, outbox.SelectDead) (int, error)
}

var replay = action{
	name: "replay", past: "replayed",
	warning:   "they will be published again",
	holdsBack: true,
	do: func(ctx context.Context, d outbox.DeadLetterStore, s outbox.SelectDead) (int, error) {
		return d.ReplayDead(ctx, s)
	},
}

var purge = action{
	name: "purge", past: "purged", confirmIDs: true,
	warning: "they will be deleted for good",
	do: func(ctx context.Context, d outbox.DeadLetterStore, s outbox.SelectDead) (int, error) {
		return d.PurgeDead(ctx, s)
	},
}

func replayCommand(a *app.App) *cobra.Command {
	cmd := actionCommand(a, replay)
	cmd.Use = "replay [ID...] | --all"
	cmd.Short = "Publish dead letters again (after fixing their cause)"
	cmd.Long = `replay makes dead letters pending again with their attempt count reset; the
relay publishes them at its next read of their lane. Replay once the cause is fixed (the
topic exists, the broker accepts the size), or they come back as dead letters.

By default (RelayConfig.StrictOrder off) later messages of the same key were
not held back, so a replayed message arrives after them. Once replayed, a dead
letter is again the first pending message of its key: the later messages of
its key that are still pending wait until it is delivered, or dead-lettered
again after its retries. replay says how many messages will wait (in the
question, or before replaying with --yes or listed IDs).

--all asks for confirmation on a terminal (--yes skips it; without a terminal
--yes is required). Many dead letters are replayed in batches, with a progress
bar on a terminal.`
	cmd.Example = `  outbox dead replay 0191d7a4-5c3e-7b1a-9f2e-3d4c5b6a7988
  outbox dead replay --all --yes`
	return cmd
}

func purgeCommand(a *app.App) *cobra.Command {
	cmd := actionCommand(a, purge)
	cmd.Use = "purge [ID...] | --all"
	cmd.Short = "Delete dead letters for good"
	cmd.Long = `purge deletes dead letters: they will never be published. It asks for
confirmation on a terminal (--yes skips it; without a terminal --yes is required).`
	cmd.Example = `  outbox dead purge 0191d7a4-5c3e-7b1a-9f2e-3d4c5b6a7988
  outbox dead purge --all --yes`
	return cmd
}

func actionCommand(a *app.App, act action) *cobra.Command {
	var (
		store backend.StoreOptions
		wait  time.Duration
		all   bool
		yes   bool
		batch int
	)
	cmd := &cobra.Command{
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return app.Usagef("give dead letter IDs or --all, not both")
			case !all && len(args) == 0:
				return app.Usagef("name the dead letters to %s by ID, or pass --all (see: outbox dead list)", act.name)
			case batch <= 0:
				return app.Usagef("%s: must be positive", a.Source("batch"))
			}
			ids := make([]string, len(args))
			for i, id := range args {
				ids[i] = strings.ToLower(strings.TrimSpace(id))
			}
			st, err := a.OpenStore(cmd.Context(), store, "dead")
			if err != nil {
				return err
			}
			defer st.Close()
			d, err := st.DeadLetters()
			if err != nil {
				return err
			}
			r := &runner{a: a, st: st, d: d, act: act, wait: wait, batch: batch}
			if all {
				return r.all(cmd.Context(), yes)
			}
			return r.ids(cmd.Context(), ids, yes)
		},
	}
	store.AddFlags(cmd.Flags())
	app.AddWaitFlag(cmd.Flags(), &wait)
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().IntVar(&batch, "batch", 500, "dead letters per store call")
	app.NoEnv(cmd.Flags().Lookup("all"))
	app.NoEnv(cmd.Flags().Lookup("yes"))
	return cmd
}

// runner carries out one replay or purge.
type runner struct {
	a     *app.App
	st    *backend.Store
	d     outbox.DeadLetterStore
	act   action
	wait  time.Duration
	batch int
}

func (r *runner) call(ctx context.Context, what string, fn func(context.Context) error) error {
	return r.a.Retry(ctx, what+" ("+r.st.Display+")", r.wait, fn)
}

// ids acts on the listed dead letters, in batches.
func (r *runner) ids(ctx context.Context, ids []string, yes bool) error {
	behind := r.behind(ctx, outbox.SelectDead{IDs: ids})
	if r.act.confirmIDs {
		q := fmt.Sprintf("%s %d dead letter(s) of %s? %s.", capital(r.act.name), len(ids), r.st.Display, capital(r.act.warning))
		if err := r.a.Confirm(q, yes); err != nil {
			return err
		}
	}
	if behind != "" {
		r.a.Printf("%s.\n", capital(behind))
	}
	bar := r.progress(int64(len(ids)))
	done := 0
	for chunk := range slices.Chunk(ids, r.batch) {
		var n int
		err := r.call(ctx, r.act.name+" dead letters", func(ctx context.Context) error {
			var err error
			n, err = r.act.do(ctx, r.d, outbox.SelectDead{IDs: chunk})
			return err
		})
		if err != nil {
			return r.partial(done, err)
		}
		done += n
		bar.add(len(chunk))
	}
	bar.finish()
	r.a.Printf("%s %d dead letter(s) of %s\n", r.act.past, done, r.st.Display)
	if missing := len(ids) - done; missing > 0 {
		return fmt.Errorf("%w: %d of the %d IDs given are not dead letters (replayed, purged, delivered, or never dead); see outbox dead list",
			outbox.ErrNotFound, missing, len(ids))
	}
	return nil
}

// all acts on every dead letter, a page at a time, so that each store call
// stays small and progress shows.
func (r *runner) all(ctx context.Context, yes bool) error {
	total := int64(-1)
	if sr, err := r.st.Stats(); err == nil {
		_ = r.call(ctx, "count dead letters", func(ctx context.Context) error {
			s, err := sr.Stats(ctx)
			if err == nil {
				total = s.Dead
			}
			return err
		})
	}
	if total == 0 {
		r.a.Printf("no dead letters in %s\n", r.st.Display)
		return nil
	}
	count := "all"
	if total > 0 {
		count = fmt.Sprintf("all %d", total)
	}
	q := fmt.Sprintf("%s %s dead letters of %s? %s.", capital(r.act.name), count, r.st.Display, capital(r.act.warning))
	behind := r.behind(ctx, outbox.SelectDead{All: true})
	if behind != "" {
		q += " " + capital(behind) + "."
	}
	if err := r.a.Confirm(q, yes); err != nil {
		return err
	}
	if behind != "" && yes {
		r.a.Printf("%s.\n", capital(behind))
	}

	bar := r.progress(total)
	done := 0
	seen := map[string]bool{} // a replayed letter may die again while we page
	var cursor int64
	for {
		var page []outbox.DeadLetter
		err := r.call(ctx, "list dead letters", func(ctx context.Context) error {
			var err error
			page, err = r.d.ListDead(ctx, outbox.ListDeadParams{AfterSeq: cursor, Limit: r.batch})
			return err
		})
		if err != nil {
			return r.partial(done, err)
		}
		var ids []string
		for _, l := range page {
			if !seen[l.ID] {
				seen[l.ID] = true
				ids = append(ids, l.ID)
			}
		}
		if len(ids) == 0 {
			if len(page) < r.batch {
				break
			}
			cursor = page[len(page)-1].Seq // a full page of letters already handled
			continue
		}
		var n int
		err = r.call(ctx, r.act.name+" dead letters", func(ctx context.Context) error {
			var err error
			n, err = r.act.do(ctx, r.d, outbox.SelectDead{IDs: ids})
			return err
		})
		if err != nil {
			return r.partial(done, err)
		}
		done += n
		bar.add(n)
		// Sequence numbers may tie across keys (MongoDB): start the next
		// page just below the last one, and skip the IDs already handled.
		cursor = page[len(page)-1].Seq - 1
	}
	bar.finish()
	r.a.Printf("%s %d dead letter(s) of %s\n", r.act.past, done, r.st.Display)
	return nil
}

// behind says how many pending messages a replay of sel holds back, or
// "" when none does, for actions that do not hold back, and when the store
// cannot tell (a failed count is logged: it must not stop a repair).
func (r *runner) behind(ctx context.Context, sel outbox.SelectDead) string {
	if !r.act.holdsBack {
		return ""
	}
	wb, err := r.st.DeadLetterBacklog()
	if err != nil {
		return ""
	}
	var w outbox.Waiting
	err = r.call(ctx, "count the messages behind the dead letters", func(ctx context.Context) error {
		var err error
		w, err = wb.WaitingBehindDead(ctx, sel)
		return err
	})
	if err != nil {
		r.a.Logger().Warn("outbox: could not count the messages behind the dead letters", "error", err)
		return ""
	}
	if w.Records == 0 {
		return ""
	}
	are := "are"
	if w.Records == 1 {
		are = "is"
	}
	return fmt.Sprintf("%s of %s %s pending behind these dead letters and will wait: once replayed, each dead letter goes first, "+
		"and the later messages of its key wait until it is delivered, or dead-lettered again after its retries (fix the cause first)",
		several(w.Records, "later message"), several(w.Keys, "key"), are)
}

// several says n things: "1 key", "3 keys".
func several(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func (r *runner) partial(done int, err error) error {
	if done > 0 {
		r.a.Printf("%s %d dead letter(s) of %s before the error\n", r.act.past, done, r.st.Display)
	}
	return err
}

// bar is a progress bar on a terminal's Stderr, and nothing elsewhere.
type bar struct{ pb *progressbar.ProgressBar }

func (r *runner) progress(total int64) bar {
	if !r.a.Terminal(r.a.Stderr) || (total >= 0 && total <= int64(r.batch)) {
		return bar{}
	}
	return bar{progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(r.a.Stderr),
		progressbar.OptionSetDescription(r.act.name),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("letters"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)}
}

func (b bar) add(n int) {
	if b.pb != nil {
		_ = b.pb.Add(n)
	}
}

func (b bar) finish() {
	if b.pb != nil {
		_ = b.pb.Finish()
	}
}

func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
