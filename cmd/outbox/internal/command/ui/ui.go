// Package ui is `outbox ui`: the operator's console in the browser, on its
// own (package internal/ui serves it).
package ui

import (
	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/ui"
)

// Command returns `outbox ui`.
func Command(a *app.App) *cobra.Command {
	var (
		store backend.StoreOptions
		o     ui.Options
	)
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the operator's console in the browser",
		Long: `ui serves the operator's console: an overview (pending, lag, dead letters, the
live relays and their lanes, the lanes that lag and when each last moved,
warnings, live charts of the last minutes), "where is my event?" (a message by
ID or the messages of a key, with their state and what they wait for) and the
dead letters (filter, inspect payload and headers, replay or purge after a
confirmation that says what replay holds back).

It reads the statistics every 2 seconds while someone watches, however many
browsers do, as "outbox status --watch 2s" does (every 30 seconds once nobody has
looked for two minutes); page refreshes make no query. Deliveries per second and per
topic are known to a console served by the relay itself (outbox relay
--ui-addr).

It listens on loopback by default; an address beyond loopback needs --token or
--basic-auth (or --insecure). --read-only hides and refuses replay and purge.
Every replay and purge is logged with who asked for it.`,
		Example: `  outbox ui --store postgres://app@db:5432/app
  outbox ui --store postgres://app@db:5432/app --addr 0.0.0.0:8089 --basic-auth ops:s3cret --read-only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			auth, err := o.Auth()
			if err != nil {
				return app.Usagef("%s", err)
			}
			if err := ui.CheckAddr(o.Addr, auth, o.Insecure); err != nil {
				return app.Usagef("%s %s", a.Source("addr"), err)
			}
			st, err := a.OpenStore(cmd.Context(), store, "ui")
			if err != nil {
				return err
			}
			defer st.Close()
			s, err := ui.New(ui.Config{Store: st.Outbox, Display: st.Display, Logger: a.Logger(), Auth: auth, ReadOnly: o.ReadOnly})
			if err != nil {
				return err
			}
			stop, _, err := ui.Serve(cmd.Context(), o.Addr, s)
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			stop()
			return nil
		},
	}
	store.AddFlags(cmd.Flags())
	o.AddFlags(cmd.Flags(), "", "127.0.0.1:8089")
	return cmd
}
