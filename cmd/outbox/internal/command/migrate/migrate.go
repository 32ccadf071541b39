// Package migrate is `outbox migrate`: create or upgrade the outbox schema.
package migrate

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
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

// versioned is a store that numbers its schema versions (PostgreSQL,
// MySQL, SQLite).
type versioned interface {
	SchemaVersion(context.Context) (int, error)
}

// unversioned is a store whose schema is a set of collections and indexes
// (MongoDB).
type unversioned interface {
	MissingSchema(context.Context) ([]string, error)
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
	// What was there before is read in the same retried step as the
	// migration, so that an outage is waited out once.
	var before, after int
	var missing []string
	err = a.Retry(ctx, "migrate "+st.Display, wait, func(ctx context.Context) error {
		var err error
		switch s := st.Outbox.(type) {
		case versioned:
			if before, err = s.SchemaVersion(ctx); err != nil {
				return err
			}
		case unversioned:
			if missing, err = s.MissingSchema(ctx); err != nil {
				return err
			}
		}
		if err := m.Migrate(ctx); err != nil {
			return err
		}
		if s, ok := st.Outbox.(versioned); ok {
			after, err = s.SchemaVersion(ctx)
		}
		return err
	})
	if err != nil {
		return err
	}
	switch st.Outbox.(type) {
	case versioned:
		switch {
		case before == after:
			a.Printf("%s: already up to date (schema version %d)\n", st.Display, after)
		case before == 0:
			a.Printf("migrated %s to schema version %d (from version 0: no tables yet)\n", st.Display, after)
		default:
			a.Printf("migrated %s to schema version %d (from version %d)\n", st.Display, after, before)
		}
	case unversioned:
		if len(missing) == 0 {
			a.Printf("%s: already up to date (every collection and index exists)\n", st.Display)
		} else {
			a.Printf("migrated %s: created %s\n", st.Display, strings.Join(missing, ", "))
		}
	default:
		a.Printf("migrated %s\n", st.Display)
	}
	return nil
}
