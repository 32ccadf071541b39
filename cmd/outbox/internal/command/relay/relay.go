// Package relay is `outbox relay`: run a relay from a store to a broker,
// with Prometheus metrics, health endpoints and optional tracing.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/ui"
	outboxprom "github.com/txoutbox/txoutbox/contrib/prometheus"
	outbox "github.com/txoutbox/txoutbox/core"
)

// options are the flags of `outbox relay`.
type options struct {
	store  backend.StoreOptions
	broker backend.BrokerOptions
	relay  outbox.RelayConfig

	metricsAddr   string
	healthTimeout time.Duration
	otel          bool
	migrate       bool
	ui            ui.Options
}

// Command returns `outbox relay`.
func Command(a *app.App) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Relay committed messages from the outbox to the broker",
		Long: `relay reads committed messages from the outbox, publishes them to the broker
and records each outcome, until SIGTERM or SIGINT: then the batches in flight
are finished and recorded, and the relay gives its lanes back so that the
other relays take them over at once. A second signal exits at once (the lane
leases then expire after --lease, and other relays take the lanes over).

Relays share the outbox by lanes: every message belongs to one lane (a hash of
its key; "outbox migrate" fixes the lane count), and each live relay leases a
fair share of the lanes, renewing the lease every third of --lease. Only the
holder of a lane publishes its messages, so several relays keep the order of
each key. When a relay dies, its lanes wait until their lease expires, then
the other relays take them; the first messages of those lanes are charged an
attempt, since they may have been in flight.

A store or broker that does not answer, at startup or later, is retried with
backoff and logged once per step; the process does not exit. A store that
refuses the credentials or a privilege, or whose database or outbox tables do
not exist, stops the relay (exit 1) with a message saying what to fix: run
"outbox migrate" first, or pass --migrate. A broker that refuses the
credentials pauses the relay, logged as an error, until it accepts them.

With --tail (PostgreSQL only, after "outbox migrate --tail", and with writers
that use pgstore's Config.Tail) the relay publishes from the outbox's log: one
relay at a time holds the logical replication slot and publishes in commit
order as transactions commit; the others stand by and take the slot over
within --lease when its holder dies. Messages that fail are parked in the
table, where every relay's lanes retry them as above.

With --metrics-addr the relay serves /metrics (Prometheus), /healthz (the
process and its relay loop are alive) and /readyz (store and broker answer).
With --otel, or when OTEL_EXPORTER_OTLP_ENDPOINT is set, every publish is
traced (OTLP over HTTP, configured by the standard OTEL_* variables),
continuing the trace that the writer put in the message headers.`,
		Example: `  outbox relay --store postgres://relay@db:5432/app --broker kafka://kafka-1:9092,kafka-2:9092 --metrics-addr :9090
  OUTBOX_STORE_URL=mysql://relay:secret@db:3306/app OUTBOX_BROKER_URL=nats://nats:4222 outbox relay
  outbox relay --config /etc/outbox/relay.yaml --topic-map orders=prod.orders --topic-prefix eu.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), a, o)
		},
	}
	fs := cmd.Flags()
	o.store.AddFlags(fs)
	o.store.AddTailFlag(fs)
	o.broker.AddFlags(fs)
	r := &o.relay
	fs.StringVar(&r.Owner, "owner", "", "identity of this relay in lane leases, status and logs; unique per run; default <hostname>-<pid>-<random>")
	fs.IntVar(&r.BatchSize, "batch-size", outbox.DefaultBatchSize, "most messages read and published at once")
	fs.IntVar(&r.Concurrency, "concurrency", outbox.DefaultConcurrency, "batches in flight at once (never two with messages of one key)")
	fs.DurationVar(&r.PollInterval, "poll-interval", outbox.DefaultPollInterval, "longest wait between reads while the outbox is idle")
	fs.DurationVar(&r.MinPollInterval, "min-poll-interval", 0, "first wait after a read found nothing new, doubling up to --poll-interval; 0 means 10ms (or --poll-interval if shorter)")
	fs.DurationVar(&r.Lease, "lease", outbox.DefaultLease, "lane lease: renewed every third of it; the lanes of a relay that died are taken over once it expires")
	fs.DurationVar(&r.ReadTimeout, "read-timeout", 0, "bound of one read of the relay's lanes and of one round of lane leasing; at most half of --lease; 0 means 5s (or half of --lease if shorter)")
	fs.DurationVar(&r.PublishTimeout, "publish-timeout", outbox.DefaultPublishTimeout, "bound of one publish, and of recording its outcome")
	fs.IntVar(&r.MaxAttempts, "max-attempts", outbox.DefaultMaxAttempts, "attempts of a message before it is dead-lettered (failed publishes, and deaths of relays while it was in flight)")
	fs.DurationVar(&r.MinRetryDelay, "min-retry-delay", outbox.DefaultMinRetryDelay, "first backoff of a failing message")
	fs.DurationVar(&r.MaxRetryDelay, "max-retry-delay", 0, "longest backoff of a failing message; 0 means 5m (or --min-retry-delay if longer)")
	fs.BoolVar(&r.StrictOrder, "strict-order", false, "hold the later messages of a key behind its dead letter until it is replayed or purged")
	fs.DurationVar(&r.Retention, "retention", 0, "keep delivered messages this long before deleting them (0: delete each one when the broker acknowledged it, the fastest; negative: keep them for good)")
	fs.DurationVar(&r.CleanupInterval, "cleanup-interval", outbox.DefaultCleanupInterval, "how often delivered messages are deleted")
	fs.IntVar(&r.CleanupBatch, "cleanup-batch", outbox.DefaultCleanupBatch, "delivered messages deleted per statement")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (e.g. :9090); empty serves nothing")
	fs.DurationVar(&o.healthTimeout, "health-timeout", 2*time.Second, "how long /readyz waits for the store and the broker to answer")
	fs.BoolVar(&o.otel, "otel", false, "trace publishes with OpenTelemetry (OTLP/HTTP); also on when OTEL_EXPORTER_OTLP_ENDPOINT is set")
	o.ui.AddFlags(fs, "ui-", "")
	fs.BoolVar(&o.migrate, "migrate", false, "create or upgrade the outbox tables before relaying (like outbox migrate)")
	return cmd
}

func run(ctx context.Context, a *app.App, o options) error {
	log := a.Logger()
	if err := checkConsole(a, o.ui); err != nil {
		return err
	}
	st, err := a.OpenStore(ctx, o.store, "relay")
	if err != nil {
		return err
	}
	defer st.Close()
	if st.Slot != "" && !o.migrate {
		// Without its slot a tailing relay would only log, over and over,
		// that it cannot stream.
		var exists bool
		err := a.Retry(ctx, "look up replication slot "+st.Slot, -1, func(ctx context.Context) error {
			var err error
			exists, err = st.SlotExists(ctx)
			return err
		})
		switch {
		case ctx.Err() != nil:
			return nil // stopped before the store answered
		case err != nil:
			return err
		case !exists:
			return fmt.Errorf("%s: the replication slot %s does not exist in %s, so nothing can be tailed: create it with `outbox migrate --tail` (with the same store flags), or start the relay with --migrate",
				a.Source("tail"), st.Slot, st.Display)
		}
	}
	// Kafka's Dial does not wait for the brokers, and NATS's Connect keeps
	// trying in the background; should either report the broker
	// unreachable all the same, retry (a relay never exits for an outage).
	var br *backend.Broker
	err = a.Retry(ctx, "connect to the broker", -1, func(ctx context.Context) error {
		var err error
		br, err = a.OpenBroker(ctx, o.broker)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before the broker answered
		}
		return err
	}
	defer br.Close()

	if tracingWanted(o.otel, a) {
		stop, err := startTracing(ctx, log, br)
		if err != nil {
			return err
		}
		defer stop()
	}

	observer, err := outboxprom.NewObserver(outboxprom.ObserverConfig{})
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	reported, stopConsole, err := startConsole(ctx, a, o.ui, st, observer)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Source("ui-addr"), err)
	}
	defer stopConsole()
	cfg := o.relay
	cfg.Logger = log
	cfg.Observer = stopOnRefusal{Observer: reported, stop: stop}
	relay, err := outbox.NewRelay(st.Outbox, br.Publisher, cfg)
	if err != nil {
		return &app.UsageError{Err: flagNames(err)}
	}

	h := &health{store: st, broker: br, timeout: o.healthTimeout, explain: a.Problem}
	if o.metricsAddr != "" {
		stopServer, err := h.serve(o.metricsAddr, observer, log)
		if err != nil {
			return fmt.Errorf("%s: %w", a.Source("metrics-addr"), err)
		}
		defer stopServer()
	}

	attrs := []any{slog.String("store", st.Display), slog.String("broker", br.Display), slog.String("owner", relay.Owner())}
	if st.Slot != "" {
		attrs = append(attrs, slog.String("slot", st.Slot))
	}
	log.Info("outbox relay: starting", attrs...)
	if o.migrate {
		m, err := st.Migrator()
		if err != nil {
			return err
		}
		if err := a.Retry(ctx, "migrate "+st.Display, -1, m.Migrate); err != nil {
			if ctx.Err() != nil {
				log.Info("outbox relay: stopped before it started")
				return nil
			}
			return err
		}
	}
	go reportReachability(ctx, a, st, br)

	h.state.Store(stateRunning)
	err = relay.Run(ctx)
	h.state.Store(stateStopped)
	if err != nil {
		return err
	}
	if cause := context.Cause(ctx); app.NeedsFix(cause) {
		return cause // explained by the CLI: what to fix, and how
	}
	log.Info("outbox relay: stopped gracefully")
	return nil
}

// reportReachability logs once, at startup, whether the store and broker
// answer, so that an operator sees a misconfigured address or refused
// credentials at once, explained (app.Problem). The relay itself keeps
// trying either way, except for a store that needs fixing, which stops it
// (stopOnRefusal) with a message of its own.
func reportReachability(ctx context.Context, a *app.App, st *backend.Store, br *backend.Broker) {
	log := a.Logger()
	check := func(what, display string, target backend.Target, ping func(context.Context) error) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := ping(pctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		problem := a.Problem(target, err)
		if problem == "" {
			problem = err.Error()
		}
		switch {
		case !app.NeedsFix(err):
			log.Warn("outbox relay: "+what+" does not answer yet; the relay keeps trying with backoff",
				slog.String(what, display), slog.String("error", problem))
		case target.IsBroker():
			log.Error("outbox relay: the broker refuses the relay; it pauses until that is fixed",
				slog.String(what, display), slog.String("error", problem))
		}
	}
	go check("store", st.Display, st.Target, st.Ping)
	check("broker", br.Display, br.Target, br.Ping)
}

// relayFields are RelayConfig's fields and the flags that set them.
var relayFields = []struct{ field, flag string }{
	{"MinPollInterval", "--min-poll-interval"}, {"PollInterval", "--poll-interval"},
	{"BatchSize", "--batch-size"}, {"Concurrency", "--concurrency"},
	{"PublishTimeout", "--publish-timeout"}, {"ReadTimeout", "--read-timeout"}, {"Lease", "--lease"},
	{"MaxAttempts", "--max-attempts"}, {"MinRetryDelay", "--min-retry-delay"},
	{"MaxRetryDelay", "--max-retry-delay"}, {"CleanupInterval", "--cleanup-interval"},
	{"CleanupBatch", "--cleanup-batch"}, {"Retention", "--retention"},
}

// flagNames rewrites a RelayConfig validation error in terms of flags.
func flagNames(err error) error {
	if !errors.Is(err, outbox.ErrInvalidConfig) {
		return err
	}
	msg := strings.TrimPrefix(err.Error(), outbox.ErrInvalidConfig.Error()+": ")
	msg = strings.ReplaceAll(msg, "RelayConfig.", "")
	var b strings.Builder
	for i := 0; i < len(msg); {
		matched := false
		for _, f := range relayFields {
			if strings.HasPrefix(msg[i:], f.field) && (i == 0 || !isLetter(msg[i-1])) {
				b.WriteString(f.flag)
				i += len(f.field)
				matched = true
				break
			}
		}
		if !matched {
			b.WriteByte(msg[i])
			i++
		}
	}
	return fmt.Errorf("invalid relay settings: %s", b.String())
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
