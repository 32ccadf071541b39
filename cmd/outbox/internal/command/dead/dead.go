// Package dead is `outbox dead`: list, show, replay and purge dead letters.
package dead

import (
	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
)

// Command returns `outbox dead` and its subcommands.
func Command(a *app.App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "List, show, replay or purge dead letters",
		Long: `A dead letter is a message the relay gave up on: the broker refused it
permanently (too large, invalid topic) or it failed MaxAttempts times. It stays
in the outbox with its last error until it is replayed (published again, once
the cause is fixed) or purged (deleted for good).`,
	}
	cmd.AddCommand(listCommand(a), showCommand(a), replayCommand(a), purgeCommand(a))
	return cmd
}
