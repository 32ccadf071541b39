// Package cli is the outbox command line: the root command, its global flags
// and the list of subcommands. Package main of cmd/outbox is a thin wrapper
// over [Main], so tests run commands in-process with their own streams and
// environment, and a built binary behaves the same.
//
// Each subcommand lives in its own package under internal/command and is
// registered in commands.go; see that file to add one.
package cli

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
)

// Version is the version --version prints.
var Version = "v0.1.0"

// Main runs the outbox command with args (without the program name) and
// returns the process exit code: 0 on success, 1 when the command failed,
// 2 for a mistake in the flags, environment or config file. ctx ends the
// command: cancel it on SIGTERM or SIGINT for a graceful stop.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(ctx, app.New(stdin, stdout, stderr), args)
}

// Run is [Main] with an [app.App] of the caller's, whose environment and
// terminal detection a test can set.
func Run(ctx context.Context, a *app.App, args []string) int {
	return a.Execute(ctx, NewRoot(a), args)
}

// NewRoot returns the root command with every subcommand of commands.go.
func NewRoot(a *app.App) *cobra.Command {
	if a.Version == "" {
		a.Version = Version
	}
	root := &cobra.Command{
		Use:   "outbox",
		Short: "Run, observe and repair a txoutbox relay",
		Long: `outbox runs the relay of a txoutbox transactional outbox and helps operate it.

Every flag can also be set in the environment (OUTBOX_<FLAG>, e.g. OUTBOX_BATCH_SIZE;
the store and broker URLs are OUTBOX_STORE_URL and OUTBOX_BROKER_URL) or in a YAML
config file (--config or OUTBOX_CONFIG) keyed by flag name. Precedence:
flags > environment > config file > defaults.`,
		Version: a.Version,
	}
	for _, command := range commands {
		root.AddCommand(command(a))
	}
	a.SetupRoot(root)
	return root
}
