package dead

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

func listCommand(a *app.App) *cobra.Command {
	var (
		store  backend.StoreOptions
		wait   time.Duration
		limit  int
		after  int64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Example: `  outbox dead list --store postgres://app@db:5432/app
  outbox dead list --limit 1000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return app.Usagef("%s: must be positive", a.Source("limit"))
			}
			var letters []outbox.DeadLetter
			err := withDeadLetters(cmd.Context(), a, store, wait, func(ctx context.Context, _ *backend.Store, d outbox.DeadLetterStore) error {
				var err error
				letters, err = d.ListDead(ctx, outbox.ListDeadParams{AfterSeq: after, Limit: limit})
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]Letter, 0, len(letters))
				for _, d := range letters {
					out = append(out, newLetter(d, false))
				}
				return a.WriteJSON(out)
			}
			if len(letters) == 0 {
				a.Printf("no dead letters\n")
				return nil
			}
			writeTable(a.Stdout, letters)
			if len(letters) == limit {
				fmt.Fprintf(a.Stderr, "(the first %d; for the next ones: outbox dead list --after %d)\n", limit, letters[len(letters)-1].Seq)
			}
			return nil
		},
	}
	store.AddFlags(cmd.Flags())
	app.AddWaitFlag(cmd.Flags(), &wait)
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most this many")
	cmd.Flags().Int64Var(&after, "after", 0, "list the dead letters after this sequence number (the seq of the last one listed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON with stable field names")
	return cmd
}

func showCommand(a *app.App) *cobra.Command {
	var (
		store  backend.StoreOptions
		wait   time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "show ID",
		Short:   "Show one dead letter: error, attempts, headers and payload",
		Long:    "show prints a dead letter in full. The payload is shown as text when it is printable UTF-8, in base64 otherwise.",
		Example: `  outbox dead show 0191d7a4-5c3e-7b1a-9f2e-3d4c5b6a7988`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := strings.ToLower(strings.TrimSpace(args[0]))
			var letters []outbox.DeadLetter
			err := withDeadLetters(cmd.Context(), a, store, wait, func(ctx context.Context, _ *backend.Store, d outbox.DeadLetterStore) error {
				var err error
				letters, err = d.ListDead(ctx, outbox.ListDeadParams{IDs: []string{id}, Limit: 1})
				return err
			})
			if err != nil {
				return err
			}
			if len(letters) == 0 {
				return fmt.Errorf("%w: no dead letter has the ID %q (replayed, purged, delivered, or never dead)", outbox.ErrNotFound, id)
			}
			l := newLetter(letters[0], true)
			if asJSON {
				return a.WriteJSON(l)
			}
			writeDetails(a.Stdout, l)
			return nil
		},
	}
	store.AddFlags(cmd.Flags())
	app.AddWaitFlag(cmd.Flags(), &wait)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON with stable field names")
	return cmd
}

// withDeadLetters opens the store, checks that it keeps dead letters, and
// calls fn, retrying while the store does not answer (up to wait).
func withDeadLetters(ctx context.Context, a *app.App, o backend.StoreOptions, wait time.Duration,
	fn func(context.Context, *backend.Store, outbox.DeadLetterStore) error) error {
	st, err := a.OpenStore(ctx, o, "dead")
	if err != nil {
		return err
	}
	defer st.Close()
	d, err := st.DeadLetters()
	if err != nil {
		return err
	}
	return a.Retry(ctx, "read the dead letters of "+st.Display, wait, func(ctx context.Context) error {
		return fn(ctx, st, d)
	})
}
