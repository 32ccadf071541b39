package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/conformance/ledger"
	outbox "github.com/txoutbox/txoutbox/core"
)

// interruptedDrain bounds the wait for the last events after the run was
// interrupted (Ctrl-C), so that the demo still prints a verdict and cleans
// up promptly.
const interruptedDrain = 5 * time.Second

// receiveHook, when set (by tests), sees every message the consumer reads
// and drops those for which it returns false.
var receiveHook func(ledger.Received) bool

// Run runs a demo as cfg describes, writing its progress and verdict to out,
// and returns the verdict. The run lasts cfg.Duration, then waits for the
// events still on their way; cancelling ctx (Ctrl-C) ends it early, with a
// verdict marked Interrupted. Run always removes its temporary directory and
// what it created on real servers.
//
// An error means the demo could not run (a bad URL, a server that does not
// answer, a relay that keeps failing): configuration errors match
// outbox.ErrInvalidConfig. A run that went to the end returns a nil error
// whatever its verdict; see [Verdict.Clean].
func Run(ctx context.Context, cfg Config, out io.Writer) (v Verdict, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return v, err
	}
	// Ctrl-C ends the run, not its cleanup.
	base := context.WithoutCancel(ctx)
	setupStart := time.Now()
	dir, err := os.MkdirTemp(cfg.TempDir, "outbox-demo-")
	if err != nil {
		return v, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	run := runID()
	keys := make([]string, cfg.Keys)
	width := len(strconv.Itoa(cfg.Keys))
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%0*d", width, i+1)
	}
	cleanup := func(what string, close func(context.Context) error) {
		cctx, cancel := context.WithTimeout(base, 30*time.Second)
		defer cancel()
		if cerr := close(cctx); cerr != nil {
			fmt.Fprintf(out, "warning: %s: %v\n", what, cerr)
		}
	}

	setup, cancelSetup := context.WithTimeout(ctx, time.Minute)
	defer cancelSetup()
	br, err := openBroker(setup, cfg, dir, run, cfg.Logger)
	if err != nil {
		return v, err
	}
	defer cleanup("broker", br.close)
	st, err := openStore(setup, cfg, dir, run, keys)
	if err != nil {
		return v, err
	}
	defer cleanup("store", st.close)

	processes := cfg.Chaos && cfg.RelayCommand != nil
	var pub outbox.Publisher
	if !processes {
		b, err := backend.OpenBroker(setup, backend.BrokerOptions{URL: br.url, Logger: cfg.Logger})
		if err != nil {
			return v, err
		}
		defer b.Close()
		pub = b.Publisher
	}
	cancelSetup()

	book := ledger.New()
	tracker := newTracker()
	consumerCtx, stopConsumer := context.WithCancel(base)
	consumed := make(chan error, 1)
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		consumed <- br.consume(consumerCtx, func(r ledger.Received) {
			if receiveHook != nil && !receiveHook(r) {
				return
			}
			tracker.arrive(r.ID, time.Now())
			book.Receive(r)
		})
	}()
	defer func() {
		stopConsumer()
		<-consumerDone // before the broker closes
	}()

	var inProcess sync.WaitGroup // the goroutines of in-process relays
	defer inProcess.Wait()
	rs := &relays{log: cfg.Logger, fatal: make(chan error, 1)}
	if processes {
		rs.start = func(n int) (relay, error) { return startProcess(cfg, st, br, dir, n) }
	} else {
		rs.start = func(n int) (relay, error) {
			return startInProcess(base, st.outbox, pub, outbox.RelayConfig{
				Owner:        fmt.Sprintf("outbox-demo-relay-%d", n),
				Lease:        cfg.Lease,
				PollInterval: relayPollInterval,
				Logger:       cfg.Logger,
			}, &inProcess)
		}
	}
	if err := rs.run(); err != nil {
		return v, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = rs.shutdown()
		}
	}()

	printHeader(out, cfg, st, br, processes, time.Since(setupStart))

	// Writing.
	start := time.Now()
	show := &display{out: out, live: cfg.Live, start: start, chaos: cfg.Chaos}
	writing, stopWriting := context.WithTimeout(ctx, cfg.Duration)
	defer stopWriting()
	svc := &service{store: st, topic: br.topic, keys: keys, writers: cfg.Writers, rate: cfg.Rate,
		ledger: book, tracker: tracker, notify: rs.notify, log: cfg.Logger}
	written := make(chan struct{})
	go func() {
		svc.run(writing, base)
		close(written)
	}()
	chaosDone := make(chan struct{})
	go func() {
		if cfg.Chaos {
			rs.chaos(writing, start, cfg.Duration, cfg.Kills)
		}
		close(chaosDone)
	}()
	failure := func(err error) (Verdict, error) {
		stopWriting()
		<-written
		<-chaosDone
		show.done()
		return v, err
	}
	tick := time.NewTicker(cfg.ProgressEvery)
	defer tick.Stop()
	status := func(phase string) {
		_, kills, _ := rs.counts()
		show.show(phase, tracker.snapshot(), kills)
	}
writingLoop:
	for {
		select {
		case <-written:
			break writingLoop
		case err := <-rs.fatal:
			return failure(err)
		case err := <-consumed:
			return failure(consumerFailed(err))
		case <-tick.C:
			status("writing")
		}
	}
	v.Elapsed = time.Since(start)
	<-chaosDone
	v.Interrupted = ctx.Err() != nil

	// Draining: the events committed last, and those of the lanes a killed
	// relay held until their lease expired, are still on their way.
	drainFor := cfg.DrainTimeout
	if v.Interrupted {
		drainFor = min(drainFor, interruptedDrain)
	}
	drainStart := time.Now()
	draining, stopDraining := context.WithTimeout(base, drainFor)
	defer stopDraining()
	drained := make(chan error, 1)
	go func() { drained <- book.WaitAll(draining) }()
drainLoop:
	for {
		select {
		case <-drained:
			break drainLoop
		case <-ctx.Done():
			if !v.Interrupted {
				v.Interrupted = true
				stopDraining()
			}
		case err := <-rs.fatal:
			show.done()
			return v, err
		case err := <-consumed:
			show.done()
			return v, consumerFailed(err)
		case <-tick.C:
			status("draining")
		}
	}
	v.Drain = time.Since(drainStart)
	status("done")
	show.done()

	stopped = true
	relayErr := rs.shutdown()
	stopConsumer()
	<-consumerDone
	if err := <-consumed; err != nil {
		relayErr = errors.Join(relayErr, consumerFailed(err))
	}
	inProcess.Wait()

	v.Report = book.Report()
	v.WriteErrors = int(svc.errors.Load())
	p := tracker.snapshot()
	v.P50, v.P99 = p.p50, p.p99
	v.RelayStarts, v.RelayKills, v.RelayCrashes = rs.counts()
	v.Rate = cfg.Rate
	v.jetStream = br.jetStream
	v.print(out)
	if relayErr != nil {
		fmt.Fprintf(out, "warning: stopping the relay: %v\n", relayErr)
	}
	return v, nil
}

func consumerFailed(err error) error {
	if err == nil {
		err = errors.New("it stopped")
	}
	return fmt.Errorf("the demo's consumer failed: %w", err)
}

// printHeader says what runs where.
func printHeader(out io.Writer, cfg Config, st *store, br *broker, processes bool, setup time.Duration) {
	fmt.Fprintln(out, "outbox demo: a service updates users and, in the same transaction, enqueues a")
	fmt.Fprintln(out, "user.updated event; the relay publishes the events; a consumer checks each one.")
	fmt.Fprintf(out, "  store    %s\n", st.display)
	fmt.Fprintf(out, "  broker   %s\n", br.display)
	fmt.Fprintf(out, "  service  %d events/s for %s, over %d users (one ordering key each), %d writers\n",
		cfg.Rate, cfg.Duration, cfg.Keys, cfg.Writers)
	relay := fmt.Sprintf("in this process, lease %s", cfg.Lease)
	if cfg.Chaos {
		if processes {
			relay = fmt.Sprintf("`outbox relay` processes, lease %s; chaos: %d killed with SIGKILL and replaced", cfg.Lease, cfg.Kills)
		} else {
			relay = fmt.Sprintf("in this process, lease %s; chaos: %d simulated crashes, each followed by a new relay", cfg.Lease, cfg.Kills)
		}
	}
	fmt.Fprintf(out, "  relay    %s\n", relay)
	fmt.Fprintf(out, "  ready in %s\n\n", short(setup))
}

// runID names what a run creates on real servers.
func runID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
