// Command outbox runs, observes and repairs a txoutbox relay: relay,
// migrate, status and dead. See README.md, or run outbox --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/txoutbox/txoutbox/cmd/outbox/cli"
)

func main() {
	// The first SIGTERM or SIGINT stops the command gracefully; after it
	// the default handling is back, so a second one ends the process.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	context.AfterFunc(ctx, stop)
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
