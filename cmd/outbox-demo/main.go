// Command outbox-demo runs the whole txoutbox pipeline on embedded servers
// (SQLite, NATS with JetStream, or kfake) and checks with a ledger that
// nothing is lost: `outbox demo` in a program that links only what the demo
// needs, the quickest to build from a clone (go run ./cmd/outbox-demo). See
// outbox-demo --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/txoutbox/txoutbox/cmd/outbox/demo"
)

func main() {
	// The first SIGTERM or SIGINT ends the run early, with a verdict and the
	// cleanup; after it the default handling is back, so a second one ends
	// the process.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	context.AfterFunc(ctx, stop)
	os.Exit(demo.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
