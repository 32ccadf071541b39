// Package migrate is `outbox migrate`: create or upgrade the outbox schema.
package migrate

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/backend"
)

// Command returns `outbox migrate`.
func Command(a *app.App) *cobra.Command {
	var (
		store backend.StoreOptions
		wait  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the outbox tables (idempotent)",
		Long: `migrate creates the outbox table, its indexes and companion tables, or brings
them to the current version. It is idempotent and safe to run from several
processes at once (a deployment step, an init container, every relay's start).`,
		Example: `  outbox migrate --store postgres://app@db:5432/app --schema outbox
  OUTBOX_STORE_URL=mysql://app:secret@db:3306/app outbox migrate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), a, store, wait)
		},
	}
	store.AddFlags(cmd.Flags())
	app.AddWaitFlag(cmd.Flags(), &wait)
	return cmd
}

func run(ctx context.Context, a *app.App, o backend.StoreOptions, wait time.Duration) error {
	st, err := a.OpenStore(ctx, o, "migrate")
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := st.Migrator()
	if err != nil {
		return err
	}
	if err := a.Retry(ctx, "migrate "+st.Display, wait, m.Migrate); err != nil {
		return err
	}
	msg := "migrated " + st.Display
	if v, ok := st.Outbox.(interface {
		SchemaVersion(context.Context) (int, error)
	}); ok {
		if n, err := v.SchemaVersion(ctx); err == nil {
			a.Printf("%s: schema version %d\n", msg, n)
			return nil
		}
	}
	a.Printf("%s: up to date\n", msg)
	return nil
}
