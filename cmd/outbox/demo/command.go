package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

// ErrNotClean is the error of `outbox demo` when the run ended with a verdict
// that is not clean (the process then exits with code 1).
var ErrNotClean = errors.New("the demo's verdict is not clean")

// Command returns `outbox demo`. Its --chaos relays are `outbox relay`
// processes of this same executable.
func Command(a *app.App) *cobra.Command {
	return newCommand(a, "outbox demo", "demo", func() (string, error) { return os.Executable() })
}

// Main runs the outbox-demo command (cmd/outbox-demo) with args, without
// the program name, and returns the process exit code: 0 when the verdict
// is clean, 1 when it is not or the demo could not run, 2 for a mistake in
// the flags. It is `outbox demo` in a program that links only what the demo
// needs, so that it is the quickest to build from a clone; its --chaos
// relays are `outbox relay` processes of the outbox command installed
// beside it or on PATH (see [FindOutbox]). ctx ends the run early: cancel
// it on SIGINT or SIGTERM.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := app.New(stdin, stdout, stderr)
	root := newCommand(a, "outbox-demo", "outbox-demo", FindOutbox)
	a.SetupRoot(root)
	return a.Execute(ctx, root, args)
}

// FindOutbox returns the outbox command that the relay processes of
// outbox-demo --chaos run: the one installed beside the running executable
// (go install puts both in the same directory), else the one on PATH.
func FindOutbox() (string, error) {
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), "outbox")
		if info, err := os.Stat(beside); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return beside, nil
		}
	}
	return exec.LookPath("outbox")
}

// newCommand returns the demo command named use, as the user types it
// (name: "outbox demo" or "outbox-demo"); relayExecutable finds the outbox
// command that --chaos runs as relay processes.
func newCommand(a *app.App, name, use string, relayExecutable func() (string, error)) *cobra.Command {
	var cfg Config
	var verbose, inProcess bool
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run the whole pipeline on embedded servers and check that nothing is lost",
		Long: `demo runs a transactional outbox end to end, with nothing to install: a simulated
service updates rows of a users table and, in the same transaction, enqueues a
user.updated event; a relay publishes the events to a broker; a consumer reads
them back and checks them against a ledger of what the service committed.

By default the store is SQLite and the broker a NATS server with JetStream, both
embedded in a temporary directory that is removed at the end (--broker kafka
runs an in-process kfake cluster instead). A progress line shows the events
written and delivered, the lag and the commit-to-delivery latency (p50, p99);
at the end the verdict says how many events were lost (must be 0), delivered
out of order within a user (must be 0) and delivered twice (allowed: delivery
is at least once, and each copy carries the event's ID).

--chaos kills the relay several times during the run (a separate outbox relay
process, with SIGKILL) and starts a new one each time: the lanes of the dead
relay, and the events in them, wait until their lease (--lease) expires, then
the new relay takes them over, and the verdict must still show nothing lost. The relay processes are the outbox
command: outbox demo runs itself; outbox-demo runs the outbox installed beside
it or on PATH and, without one, simulates the crashes in this process.

--store and --broker take the URLs of real servers instead; the demo then works
in a schema or tables of its own and a stream or topic of its own, named after
outbox_demo and a random run id, and removes them at the end. --store, --broker,
--lease and --chaos are never read from the environment or a config file, so
the settings of a real relay cannot point the demo at a production outbox.

The exit code is 0 only when the verdict is clean.`,
		Example: fmt.Sprintf(`  %[1]s
  %[1]s --broker kafka --chaos
  %[1]s --duration 1m --rate 1000 --keys 100
  %[1]s --store postgres://postgres@localhost:5432/app --broker nats://localhost:4222`, name),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Live = a.Terminal(a.Stdout)
			if verbose {
				cfg.Logger = a.Logger()
			}
			if cfg.Chaos && !inProcess {
				exe, err := relayExecutable()
				if err != nil {
					fmt.Fprintf(a.Stderr, "%s: --chaos: no outbox command beside this one or on PATH (%v), so the relays "+
						"run in this process and their crashes are simulated; for relay processes killed with SIGKILL, "+
						"install it (go install ./cmd/outbox) or run: go run ./cmd/outbox demo --chaos\n", name, err)
				} else {
					cfg.RelayCommand = func(args []string) *exec.Cmd { return exec.Command(exe, args...) }
				}
			}
			v, err := Run(cmd.Context(), cfg, a.Stdout)
			if err != nil {
				if errors.Is(err, outbox.ErrInvalidConfig) {
					return &app.UsageError{Err: err}
				}
				return err
			}
			switch {
			case v.Interrupted:
				return errors.New("interrupted before the end of the run")
			case !v.Clean():
				return ErrNotClean
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Store, "store", EmbeddedSQLite, `"sqlite" (embedded, temporary), or a real database: postgres://…, mysql://…, sqlite:///path.db`)
	fs.StringVar(&cfg.Broker, "broker", EmbeddedNATS, `"nats" (embedded NATS with JetStream), "kafka" (embedded kfake), or a real broker: nats://…, kafka://…`)
	fs.DurationVar(&cfg.Duration, "duration", DefaultDuration, "how long the service writes")
	fs.IntVar(&cfg.Rate, "rate", DefaultRate, "events per second the service writes")
	fs.IntVar(&cfg.Keys, "keys", DefaultKeys, "users the service updates (each is an ordering key)")
	fs.BoolVar(&cfg.Chaos, "chaos", false, "kill the relay (SIGKILL) and start a new one several times during the run")
	fs.IntVar(&cfg.Kills, "kills", 0, "how many times --chaos kills the relay; 0 means one per 3s of --duration")
	fs.BoolVar(&inProcess, "in-process", false, "with --chaos, run relays in this process and simulate their crashes instead of killing relay processes")
	fs.DurationVar(&cfg.Lease, "lease", DefaultLease, "the relay's lane lease: how long the lanes of a killed relay wait before another relay takes them")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", DefaultDrain, "how long to wait, once writing stops, for the events still on their way")
	fs.BoolVar(&verbose, "verbose", false, "show the logs of the relay and the publisher on standard error")
	for _, name := range []string{"store", "broker", "chaos", "lease"} {
		// Not from OUTBOX_STORE_URL and friends, which configure the real
		// relay: the demo stays on its embedded servers unless told.
		app.NoEnv(fs.Lookup(name))
	}
	return cmd
}
