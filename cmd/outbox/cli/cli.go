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
	"fmt"
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
	root := NewRoot(a)
	root.SetArgs(args)
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(a.Stderr, "outbox: %s\n", a.Explain(err))
	}
	return app.ExitCode(err)
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
		Version:           a.Version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: a.Prepare,
	}
	root.SetFlagErrorFunc(app.FlagError)
	a.RegisterGlobalFlags(root)
	for _, command := range commands {
		root.AddCommand(command(a))
	}
	app.DocumentEnv(root)
	setUsageErrors(root)
	return root
}

// setUsageErrors makes an unknown subcommand or a wrong number of arguments
// a usage error (exit code 2) with cobra's suggestions, on every command.
func setUsageErrors(c *cobra.Command) {
	c.SuggestionsMinimumDistance = 2
	if c.Args != nil {
		args := c.Args
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &app.UsageError{Err: err}
			}
			return nil
		}
	} else if c.HasSubCommands() && !c.Runnable() {
		// A group (outbox, outbox dead) shows its help, and an unknown
		// subcommand is a usage error with cobra's suggestion.
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		c.Args = func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", a[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(a[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + s[0]
			}
			return app.Usagef("%s\n\nRun '%s --help' for usage.", msg, cmd.CommandPath())
		}
	}
	for _, sub := range c.Commands() {
		setUsageErrors(sub)
	}
}
