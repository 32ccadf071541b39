package cli

import (
	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/demo"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/command/dead"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/command/migrate"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/command/relay"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/command/status"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/command/ui"
)

// commands are the subcommands of outbox, in the order help lists them.
// This list is the only registration point.
//
// To add one (say `outbox archive`): create a package under internal/ (e.g.
// internal/command/archive) exporting
//
//	func Command(a *app.App) *cobra.Command
//
// bind its flags in there (backend.StoreOptions.AddFlags and
// backend.BrokerOptions.AddFlags give --store, --broker and friends; every
// flag is then also read from OUTBOX_<FLAG> and the config file), and add
// archive.Command to this list. Nothing else changes; see README.md, "Adding
// a command".
var commands = []func(*app.App) *cobra.Command{
	relay.Command,
	migrate.Command,
	status.Command,
	dead.Command,
	ui.Command,
	demo.Command,
}
