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
		store    backend.StoreOptions
		wait     time.Duration
		dropTail bool
		yes      bool
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
migrate keeps the count, whatever lanes=N says (it tells so).

With --tail (PostgreSQL only) migrate also prepares the log-tailing mode: it
checks that the server has wal_level=logical, and creates the publication and
the logical replication slot that relays run with --tail stream from, and says
whether it created the slot. The slot retains WAL until a relay confirms it:
a slot that no relay reads fills the disk (see max_slot_wal_keep_size).
--drop-tail leaves the mode: it drops the slot and the publication (after a
confirmation; --yes skips it), once the relays are stopped.`,
		Example: `  outbox migrate --store postgres://app@db:5432/app --schema outbox
  OUTBOX_STORE_URL=mysql://app:secret@db:3306/app outbox migrate
  outbox migrate --store 'postgres://app@db:5432/app?lanes=64'
  outbox migrate --store postgres://app@db:5432/app --tail
  outbox migrate --store postgres://app@db:5432/app --drop-tail --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dropTail {
				if store.Tail {
					return app.Usagef("%s and %s: give one; --tail creates the replication slot, --drop-tail drops it", a.Source("tail"), a.Source("drop-tail"))
				}
				return drop(cmd.Context(), a, store, wait, yes)
			}
			return run(cmd.Context(), a, store, wait)
		},
	}
	store.AddFlags(cmd.Flags())
	store.AddTailFlag(cmd.Flags())
	cmd.Flags().BoolVar(&dropTail, "drop-tail", false, "PostgreSQL only: leave the log-tailing mode: drop its replication slot and publication (stop the relays first; messages still in the slot are lost)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (--drop-tail)")
	app.NoEnv(cmd.Flags().Lookup("drop-tail"))
	app.NoEnv(cmd.Flags().Lookup("yes"))
	app.AddWaitFlag(cmd.Flags(), &wait)
	return cmd
}

// drop is `outbox migrate --drop-tail`.
func drop(ctx context.Context, a *app.App, o backend.StoreOptions, wait time.Duration, yes bool) error {
	o.Tail, o.TailSource = true, a.Source("drop-tail")
	st, err := a.OpenStore(ctx, o, "migrate")
	if err != nil {
		return err
	}
	defer st.Close()
	var exists bool
	err = a.Retry(ctx, "look up replication slot "+st.Slot, wait, func(ctx context.Context) error {
		exists, err = st.SlotExists(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if !exists {
		// The publication may be left from a half-done drop: drop it too.
		if err := st.DropTail(ctx); err != nil {
			return err
		}
		a.Printf("%s: no replication slot %s: nothing to drop (not in the log-tailing mode)\n", st.Display, st.Slot)
		return nil
	}
	q := fmt.Sprintf("Drop the replication slot %s and publication %s of %s? Relays must be stopped; messages still in the slot that no relay delivered are lost, and writers must run without --tail (Config.Tail) from now on", st.Slot, st.Slot, st.Display)
	if err := a.Confirm(q, yes); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, dropWait)
	defer cancel()
	if err := st.DropTail(dctx); err != nil {
		return err
	}
	a.Printf("dropped replication slot %s and publication %s of %s: the WAL it retained is freed; relays and writers poll the table from now on (run them without --tail)\n", st.Slot, st.Slot, st.Display)
	return nil
}

// dropWait bounds how long --drop-tail waits for a relay that still
// streams from the slot to stop.
const dropWait = 30 * time.Second

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
	slotBefore := false
	err = a.Retry(ctx, "migrate "+st.Display, wait, func(ctx context.Context) error {
		var err error
		if st.Slot != "" {
			if slotBefore, err = st.SlotExists(ctx); err != nil {
				return err
			}
		}
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
	if st.Slot != "" {
		if slotBefore {
			a.Printf("log tailing: replication slot %s and publication %s already exist (wal_level=logical); run the relays with --tail\n", st.Slot, st.Slot)
		} else {
			a.Printf("log tailing: created replication slot %s and publication %s (wal_level=logical); run the relays with --tail, and mind that the slot retains WAL until a relay reads it (max_slot_wal_keep_size)\n", st.Slot, st.Slot)
		}
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
