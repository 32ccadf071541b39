// Package migrate is `outbox migrate`: create or upgrade the outbox schema.
package migrate

import (
	"context"
	"fmt"
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
processes at once (a deployment step, an init container, every relay's start).

The first migrate also creates the outbox's lanes: every message belongs to
the lane of its key, and relays share the work by lanes, so the lane count
bounds how many relays can share an outbox. It is 256 unless the store URL
says otherwise with lanes=N (1 to 4096), and it is fixed from then on: a later
migrate keeps the count, whatever lanes=N says (it tells so).`,
		Example: `  outbox migrate --store postgres://app@db:5432/app --schema outbox
  OUTBOX_STORE_URL=mysql://app:secret@db:3306/app outbox migrate
  outbox migrate --store 'postgres://app@db:5432/app?lanes=64'`,
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
	created := false
	switch st.Outbox.(type) {
	case versioned:
		created = before == 0 && after > 0
	case unversioned:
		created = len(missing) > 0
	}
	lanes := ""
	actual := 0
	if created || st.Lanes != 0 {
		// The lane count matters when the outbox was just created, or when
		// one was asked for; read it then only, as Stats counts the backlog.
		actual = laneCount(ctx, st)
		if actual > 0 {
			lanes = fmt.Sprintf(", %d lanes", actual)
		}
	}
	switch st.Outbox.(type) {
	case versioned:
		switch {
		case before == after:
			a.Printf("%s: already up to date (schema version %d%s)\n", st.Display, after, lanes)
		case before == 0:
			a.Printf("migrated %s to schema version %d (from version 0: no tables yet)%s\n", st.Display, after, lanes)
		default:
			a.Printf("migrated %s to schema version %d (from version %d)%s\n", st.Display, after, before, lanes)
		}
	case unversioned:
		if len(missing) == 0 {
			a.Printf("%s: already up to date (every collection and index exists%s)\n", st.Display, lanes)
		} else {
			a.Printf("migrated %s: created %s%s\n", st.Display, strings.Join(missing, ", "), lanes)
		}
	default:
		a.Printf("migrated %s%s\n", st.Display, lanes)
	}
	if st.Lanes != 0 && actual != 0 && actual != st.Lanes {
		fmt.Fprintf(a.Stderr, "outbox migrate: the outbox keeps the %d lanes it was created with; lanes=%d applies only when migrate creates the outbox\n", actual, st.Lanes)
	}
	return nil
}

// laneCount reads the outbox's lane count, 0 when the store cannot tell.
func laneCount(ctx context.Context, st *backend.Store) int {
	sr, err := st.Stats()
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stats, err := sr.Stats(ctx)
	if err != nil {
		return 0
	}
	return stats.Lanes
}
