package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// SetupRoot makes root, with its subcommands added, the root command of a
// program on a: the global flags (--config, --log-level, --log-format),
// every flag filled from the environment and the config file before a RunE
// runs ([App.Prepare]), OUTBOX_<FLAG> in the help of each flag that reads
// it, and usage errors (exit code 2) with suggestions for a mistyped flag or
// subcommand. The outbox command (package cli) and the outbox-demo command
// (package demo) are both set up by it.
func (a *App) SetupRoot(root *cobra.Command) {
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.PersistentPreRunE = a.Prepare
	root.SetFlagErrorFunc(FlagError)
	a.RegisterGlobalFlags(root)
	DocumentEnv(root)
	setUsageErrors(root)
}

// Execute runs root (set up by [App.SetupRoot]) with args, without the
// program name, on a's streams, and returns the process exit code
// ([ExitCode]). A failure is printed to Stderr as one explained line
// ([App.Explain]) after the program's name.
func (a *App) Execute(ctx context.Context, root *cobra.Command, args []string) int {
	root.SetArgs(args)
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(a.Stderr, "%s: %s\n", root.Name(), a.Explain(err))
	}
	return ExitCode(err)
}

// setUsageErrors makes an unknown subcommand or a wrong number of arguments
// a usage error (exit code 2) with cobra's suggestions, on every command.
func setUsageErrors(c *cobra.Command) {
	c.SuggestionsMinimumDistance = 2
	if c.Args != nil {
		args := c.Args
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &UsageError{Err: err}
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
			return Usagef("%s\n\nRun '%s --help' for usage.", msg, cmd.CommandPath())
		}
	}
	for _, sub := range c.Commands() {
		setUsageErrors(sub)
	}
}
