package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// simpleBatchSize is the LIMIT of the simple relay's SELECT.
const simpleBatchSize = 500

// bencher is one run.
type bencher struct {
	cfg      Config
	dir      string
	payload  []byte
	progress *progress
	report   *Report
	relay    outbox.RelayConfig // cfg.Relay with its defaults, for the report
	// keys, when positive, replaces cfg.Keys for the messages written
	// (the hot-keys drain).
	keys int
}

// Run measures every store, broker and store × broker pair cfg names and
// returns the report. A measurement that fails is recorded in
// Report.Errors and the others still run; Run returns an error only for an
// invalid configuration, a store or broker it cannot reach, or an
// interruption (ctx ended: the report then holds what was measured).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	relay, err := relayDefaults(cfg.Relay)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "outbox-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}

	b := &bencher{cfg: cfg, dir: dir, relay: relay, payload: make([]byte, cfg.PayloadBytes)}
	_, _ = rand.Read(b.payload) // incompressible, like real payloads mostly are
	b.report = &Report{Started: time.Now().UTC(), Machine: machine(), Settings: b.settings()}

	var stores []storeTarget
	var brokers []brokerTarget
	defer func() {
		for _, s := range stores {
			_ = s.close()
		}
		for _, br := range brokers {
			_ = br.close()
		}
	}()
	for _, spec := range cfg.Stores {
		s, err := openStore(ctx, spec, dir, b.cfg)
		if err != nil {
			return nil, err
		}
		stores = append(stores, s)
		b.report.Stores = append(b.report.Stores, StoreReport{Component: s.info(ctx)})
	}
	for _, spec := range cfg.Brokers {
		br, err := openBroker(ctx, spec, dir, cfg)
		if err != nil {
			return nil, err
		}
		brokers = append(brokers, br)
		b.report.Brokers = append(b.report.Brokers, BrokerReport{Component: br.info(ctx)})
	}
	tailers := 0
	for _, s := range stores {
		if _, ok := s.(tailTarget); ok {
			tailers++
		}
	}
	b.progress = newProgress(cfg.Progress, cfg.LiveProgress, b.steps(len(stores), len(brokers), tailers))

	for i, s := range stores {
		if err := b.storeAlone(ctx, s, &b.report.Stores[i]); err != nil {
			return b.finish(), err
		}
	}
	for i, br := range brokers {
		if err := b.brokerAlone(ctx, br, &b.report.Brokers[i]); err != nil {
			return b.finish(), err
		}
	}
	for i, s := range stores {
		for j, br := range brokers {
			pr := PairReport{Store: b.report.Stores[i].Spec, Broker: b.report.Brokers[j].Spec}
			err := b.pair(ctx, s, br, &b.report.Stores[i], &b.report.Brokers[j], &pr)
			b.report.Pairs = append(b.report.Pairs, pr)
			if err != nil {
				return b.finish(), err
			}
		}
	}
	return b.finish(), nil
}

// relayDefaults returns c with the core defaults filled in, the way
// NewRelay fills them.
func relayDefaults(c outbox.RelayConfig) (outbox.RelayConfig, error) {
	r, err := outbox.NewRelay(nopStore{}, nopPublisher{}, c)
	if err != nil {
		return c, err
	}
	return r.Config(), nil
}

func (b *bencher) settings() Settings {
	c := b.cfg
	return Settings{
		Quick: c.Quick, Rounds: c.Rounds, Backlog: c.Backlog, Keys: c.Keys, HotKeys: max(c.HotKeys, 0), PayloadBytes: c.PayloadBytes,
		Relays: c.Relays, Rates: c.Rates, LatencySeconds: c.LatencyDuration.Seconds(), WarmupSeconds: c.LatencyWarmup.Seconds(),
		SimplePollMs: ms(c.SimplePoll), Writers: c.Writers, EnqueueSeconds: c.EnqueueDuration.Seconds(),
		Retained: c.Retained, ReadRounds: c.ReadRounds,
		RelayBatchSize: b.relay.BatchSize, RelayWorkers: b.relay.Concurrency,
		RelayMinPollMs: ms(b.relay.MinPollInterval), RelayMaxPollMs: ms(b.relay.PollInterval),
		SimpleBatchSize: simpleBatchSize, PGNotify: c.Notify, PGNotifyIntervalMs: ms(cmp.Or(c.PGNotifyInterval, pgstore.DefaultNotifyInterval)),
	}
}

// steps counts the steps the progress shows; tailers is how many of the
// stores have a log to tail.
func (b *bencher) steps(stores, brokers, tailers int) int {
	c := b.cfg
	n := 0
	count := func(scenario string, k int) {
		if c.runs(scenario) {
			n += k
		}
	}
	count(ScenarioInsert, stores)
	count(ScenarioEnqueue, stores)
	count(ScenarioGrowth, stores)
	count(ScenarioIdle, stores)
	count(ScenarioProduce, brokers)
	pairs := stores * brokers
	count(ScenarioSimple, pairs*c.Rounds)
	count(ScenarioDrain, pairs*c.Rounds*len(c.Relays))
	count(ScenarioLatency, pairs*len(c.Rates))
	if c.runs(ScenarioLatency) && c.runs(ScenarioSimple) {
		n += pairs * len(c.Rates)
	}
	if c.runs(ScenarioTail) {
		count(ScenarioEnqueue, tailers)
		count(ScenarioDrain, tailers*brokers*c.Rounds)
		count(ScenarioLatency, tailers*brokers*len(c.Rates))
	}
	return n
}

func (b *bencher) finish() *Report {
	r := b.report
	r.Seconds = time.Since(r.Started).Seconds()
	r.Machine.LoadAfter = loadAverage()
	r.Targets = checkTargets(r)
	return r
}

// failed records a measurement that failed; it reports whether the run
// must stop (ctx ended).
func (b *bencher) failed(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	b.report.Errors = append(b.report.Errors, what+": "+err.Error())
	b.progress.done("failed: %v", err)
	return nil
}

// skip records in skipped that a measurement does not apply, when err says
// so, and reports whether it did.
func skip(skipped *map[string]string, scenario string, err error) bool {
	if !errors.Is(err, errUnsupported) {
		return false
	}
	if *skipped == nil {
		*skipped = map[string]string{}
	}
	(*skipped)[scenario] = strings.TrimPrefix(err.Error(), errUnsupported.Error()+": ")
	return true
}

// profile starts a CPU profile named after the scenario when the run
// takes profiles; the returned function stops it.
func (b *bencher) profile(name string) func() {
	if b.cfg.ProfileDir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(b.cfg.ProfileDir, fileName(name)+".pprof"))
	if err != nil {
		b.report.Errors = append(b.report.Errors, "profile "+name+": "+err.Error())
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		b.report.Errors = append(b.report.Errors, "profile "+name+": "+err.Error())
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// fileName turns a label into a file name.
func fileName(label string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, label)
}

// tag names the outbox and topic of one measurement: a fresh schema,
// table, topic or stream.
func tag(scenario string) string {
	return scenario + "_" + runID()
}

// sleep waits for d or until ctx ends: pacing, not synchronisation.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// messages returns n messages to topic, numbered from first, over the
// run's keys, with the run's payload and fresh IDs.
func (b *bencher) messages(topic string, first, n int) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{ID: outbox.NewID(), Topic: topic, Key: keyOf(first+i, b.keyCount()), Payload: b.payload}
	}
	return msgs
}

// keyCount is how many keys the messages written now spread over.
func (b *bencher) keyCount() int {
	if b.keys > 0 {
		return b.keys
	}
	return b.cfg.Keys
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// nopStore and nopPublisher let relayDefaults build a relay it never runs.
type nopStore struct{ outbox.Store }
type nopPublisher struct{ outbox.Publisher }
