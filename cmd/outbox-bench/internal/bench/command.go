package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Exit codes of [Main].
const (
	ExitOK     = 0 // every measurement ran
	ExitFailed = 1 // a measurement failed, or the run could not start
	ExitUsage  = 2 // a flag is wrong
)

// usageError is a mistake in the command line: [Main] exits with
// [ExitUsage] for it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Main runs the outbox-bench command with args (without the program name)
// and returns the process exit code. The report goes to stdout, progress
// and logs to stderr (a live progress line when stderr is a terminal).
// Cancelling ctx stops the run.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := Command(stdout, stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", cmd.Name(), err)
	if errors.As(err, new(usageError)) {
		return ExitUsage
	}
	return ExitFailed
}

// Command returns the outbox-bench command, writing the report to stdout
// and progress and logs to stderr.
func Command(stdout, stderr io.Writer) *cobra.Command {
	var cfg Config
	var asJSON, verbose bool
	var doc, charts string
	cmd := &cobra.Command{
		Use:   "outbox-bench",
		Short: "Measure txoutbox's throughput, latency and overhead on real stores and brokers",
		Long: `outbox-bench measures txoutbox on each --store, each --broker and each store × broker pair,
and in the same run the ceilings and the baseline its figures are read against:

  enqueue   a business transaction (an UPDATE) alone, then with 1 and 10 outbox messages
            (8 writers), a relay running beside them
  insert    the store's raw batched INSERT rate (a ceiling)
  growth    Read + Settle with 0 and 1,000,000 retained delivered records
  produce   the broker's own async producer (kgo Produce, JetStream PublishAsync; a ceiling)
  simple    a deliberately simple relay (SELECT … FOR UPDATE SKIP LOCKED LIMIT 500, publish,
            wait for the acks, mark delivered, commit; the baseline)
  drain     a backlog of 100,000 messages (256 bytes, 1,000 keys) moved by 1, 2 and 4 relays,
            timed until a consumer has seen them all
  latency   commit → broker ack, p50/p99/p999, at 1,000 and 5,000 events/s for 20 s
  idle      the store calls per second of one relay on an empty outbox
  tail      PostgreSQL: enqueue, drain (one relay) and latency again on an outbox whose
            relay tails the WAL (pgstore Config.Tail: pg_logical_emit_message and a
            logical replication slot, created per measurement and dropped after it;
            needs wal_level = logical, else skipped with the reason)

Each measurement works in a schema, table, topic or stream of its own, created
for it and dropped at its end. Stores: postgres://…, mysql://… (or a
go-sql-driver DSN), "sqlite" (a temporary file) and "memory"; brokers: "kfake"
(in-process), kafka://…, "nats" (embedded), nats://… and "memory". The flags are
never read from the environment or a config file, so the settings of a real
relay cannot point the bench at a production outbox.

It prints tables (or --json), draws SVG charts (--charts) and rewrites the
generated part of a Markdown document (--doc). A full run takes minutes;
--quick runs everything at smoke-test sizes in seconds.

It is a developer's tool, kept out of the operator's outbox command; from a
clone of the repository: go run ./cmd/outbox-bench …`,
		Example: `  outbox-bench --quick --store memory --broker memory
  outbox-bench --store postgres://postgres@localhost:5432/test --broker kfake --broker nats://localhost:4222
  outbox-bench --store sqlite --broker kfake --skip growth,latency --json`,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = stderr
			f, ok := stderr.(*os.File)
			cfg.LiveProgress = ok && term.IsTerminal(int(f.Fd()))
			if verbose {
				cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
			}
			r, runErr := Run(cmd.Context(), cfg)
			if errors.Is(runErr, outbox.ErrInvalidConfig) {
				return usageError{runErr}
			}
			if r == nil {
				return runErr
			}
			r.Command = commandLine(cmd)
			if err := write(stdout, r, asJSON, doc, charts); err != nil {
				return errors.Join(runErr, err)
			}
			if runErr != nil {
				return runErr
			}
			if n := len(r.Errors); n > 0 {
				return fmt.Errorf("%d measurement(s) failed; see the report", n)
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (run '%s --help' for the flags)", err, cmd.CommandPath())}
	})
	fs := cmd.Flags()
	fs.StringArrayVar(&cfg.Stores, "store", nil, `store to measure, repeatable: postgres://…, mysql://…, "sqlite" or "memory" (default "sqlite")`)
	fs.StringArrayVar(&cfg.Brokers, "broker", nil, `broker to measure, repeatable: "kfake", kafka://…, "nats", nats://… or "memory" (default "kfake")`)
	fs.BoolVar(&cfg.Quick, "quick", false, "smoke-test sizes: every scenario in seconds, numbers not to be quoted")
	fs.IntVar(&cfg.Rounds, "rounds", 0, "repetitions of each drain, enqueue and read measurement; medians are reported (default 3, 1 with --quick)")
	fs.IntVar(&cfg.Backlog, "backlog", 0, "records of the drain backlog (default 100,000)")
	fs.IntVar(&cfg.Keys, "keys", 0, "ordering keys the messages spread over (default 1,000)")
	fs.IntVar(&cfg.HotKeys, "hot-keys", 0, "keys of the hot-keys drain by one relay (default 16; -1 leaves it out)")
	fs.IntVar(&cfg.PayloadBytes, "payload", 0, "payload size in bytes (default 256)")
	fs.IntSliceVar(&cfg.Relays, "relays", nil, "relay counts of the drain (default 1,2,4)")
	fs.IntSliceVar(&cfg.Rates, "rates", nil, "event rates of the latency measurement, per second (default 1000,5000)")
	fs.DurationVar(&cfg.LatencyDuration, "latency-duration", 0, "how long each latency measurement writes (default 20s)")
	fs.DurationVar(&cfg.LatencyWarmup, "latency-warmup", 0, "start of each latency measurement left out of the percentiles (default 2s)")
	fs.DurationVar(&cfg.SimplePoll, "simple-poll", 0, "the simple relay's sleep after an empty claim (default 10ms)")
	fs.Var(newNotifyValue(&cfg.Notify), "pg-notify", "how PostgreSQL writers wake relays in the latency measurement: interval (pgstore's default, Config.NotifyInterval), every-tx (a NOTIFY in every transaction) or none (DisableNotify)")
	fs.IntVar(&cfg.Writers, "writers", 0, "concurrent writers of the enqueue measurement (default 8)")
	fs.BoolVar(&cfg.EnqueueAlone, "enqueue-without-relay", false, "run the enqueue measurement without the relay that otherwise runs beside the writers (their own cost, for comparison)")
	fs.DurationVar(&cfg.EnqueueDuration, "enqueue-duration", 0, "how long each enqueue case runs per round (default 3s)")
	fs.DurationVar(&cfg.PGNotifyInterval, "pg-notify-interval", 0, "pgstore's NotifyInterval for the PostgreSQL writers (default pgstore's, 5ms)")
	fs.DurationVar(&cfg.IdleDuration, "idle-duration", 0, "how long the idle measurement counts one relay's store calls (default 30s)")
	fs.IntVar(&cfg.Retained, "retained", 0, "delivered records the table-growth measurement retains (default 1,000,000)")
	fs.IntVar(&cfg.ReadRounds, "read-rounds", 0, "reads (each with the settle of what it read) timed per table-growth round (default 20)")
	fs.StringSliceVar(&cfg.Skip, "skip", nil, "scenarios to leave out: enqueue, insert, growth, idle, produce, simple, drain, latency, tail")
	fs.IntVar(&cfg.Relay.BatchSize, "batch-size", 0, "txoutbox relays' batch size (default: the relay's, 500)")
	fs.IntVar(&cfg.Relay.Concurrency, "concurrency", 0, "txoutbox relays' concurrent batches (default: the relay's, 4)")
	fs.DurationVar(&cfg.Relay.PollInterval, "poll-interval", 0, "txoutbox relays' longest idle wait (default: the relay's, 1s)")
	fs.DurationVar(&cfg.Relay.MinPollInterval, "min-poll-interval", 0, "txoutbox relays' first idle wait (default: the relay's, 10ms)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON instead of tables")
	fs.StringVar(&charts, "charts", "", "directory to write the SVG charts to (drain.svg, latency.svg)")
	fs.StringVar(&doc, "doc", "", "Markdown file whose generated part to rewrite (docs/benchmarks.md)")
	fs.StringVar(&cfg.ProfileDir, "cpuprofile-dir", "", "directory for a CPU profile of each drain and latency measurement")
	fs.BoolVar(&verbose, "verbose", false, "show the logs of the relays and publishers on standard error")
	return cmd
}

// write puts the report where the flags say.
func write(stdout io.Writer, r *Report, asJSON bool, doc, charts string) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else if err := r.WriteText(stdout); err != nil {
		return err
	}
	if charts != "" {
		if _, err := WriteCharts(r, charts); err != nil {
			return fmt.Errorf("charts: %w", err)
		}
	}
	if doc != "" {
		rel := ""
		if charts != "" {
			var err error
			if rel, err = filepath.Rel(filepath.Dir(doc), charts); err != nil {
				rel = charts
			}
			rel = filepath.ToSlash(rel)
		}
		if err := UpdateDoc(r, doc, rel); err != nil {
			return fmt.Errorf("doc: %w", err)
		}
	}
	return nil
}

// commandLine is the command as run, from the flags set, secrets hidden.
func commandLine(cmd *cobra.Command) string {
	parts := []string{cmd.CommandPath()}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if f.Value.Type() == "stringArray" {
				for _, v := range sv.GetSlice() {
					parts = append(parts, "--"+f.Name, shellQuote(redact(v)))
				}
				return
			}
			parts = append(parts, "--"+f.Name, shellQuote(strings.Join(sv.GetSlice(), ",")))
			return
		}
		if f.Value.Type() == "bool" {
			parts = append(parts, "--"+f.Name)
			return
		}
		parts = append(parts, "--"+f.Name, shellQuote(f.Value.String()))
	})
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?&;|<>()[]{}#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// notifyValue is the --pg-notify flag.
type notifyValue struct{ n *Notify }

func newNotifyValue(n *Notify) notifyValue { return notifyValue{n} }

func (v notifyValue) String() string {
	if v.n == nil || *v.n == "" {
		return string(NotifyInterval)
	}
	return string(*v.n)
}

func (v notifyValue) Set(s string) error { *v.n = Notify(s); return nil }
func (v notifyValue) Type() string       { return "mode" }
