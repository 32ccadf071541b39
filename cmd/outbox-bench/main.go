// Command outbox-bench measures txoutbox's throughput, latency and overhead
// on real stores and brokers, with the ceilings and a baseline measured in
// the same run. It is a developer's tool, kept out of the operator's outbox
// command. See docs/benchmarks.md, or run outbox-bench --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/txoutbox/txoutbox/cmd/outbox-bench/internal/bench"
)

func main() {
	// The first SIGTERM or SIGINT stops the run (each measurement drops what
	// it made); after it the default handling is back, so a second one ends
	// the process.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	context.AfterFunc(ctx, stop)
	os.Exit(bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
