package demo

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/conformance/chaos/fence"
	outbox "github.com/txoutbox/txoutbox/core"
)

// relayPollInterval is the relays' longest wait between reads. Relay
// processes learn of new events only by polling (an SQLite commit wakes
// relays of its own process only), so it is short.
const relayPollInterval = 100 * time.Millisecond

// relay is one relay of the run, in this process or another.
type relay interface {
	// kill makes the relay die at once, without giving anything back: its
	// lanes stay leased until their lease expires.
	kill()
	// stop stops it gracefully: in-flight batches finish, and the lanes
	// are given back.
	stop() error
	// exited is closed when the relay has ended.
	exited() <-chan struct{}
	// notify tells the relay that events were committed (in-process only).
	notify()
}

// relays runs the relay of a demo: one at a time, restarted after each
// kill, and after a crash.
type relays struct {
	start func(n int) (relay, error)
	log   *slog.Logger
	fatal chan error // a relay keeps dying as it starts

	mu       sync.Mutex
	cur      relay
	starts   int
	kills    int
	crashes  int
	failing  int // crashes in a row, each soon after its start
	stopping bool
}

// run starts the first relay.
func (r *relays) run() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.startLocked()
}

func (r *relays) startLocked() error {
	r.starts++
	rl, err := r.start(r.starts)
	if err != nil {
		return fmt.Errorf("start relay %d: %w", r.starts, err)
	}
	r.cur = rl
	started := time.Now()
	go r.watch(rl, started)
	return nil
}

// watch restarts rl when it ends by itself.
func (r *relays) watch(rl relay, started time.Time) {
	<-rl.exited()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != rl || r.stopping {
		return // killed or stopped on purpose
	}
	r.crashes++
	if time.Since(started) < 3*time.Second {
		r.failing++
	} else {
		r.failing = 0
	}
	if r.failing >= 3 {
		err := fmt.Errorf("the relay exited %d times in a row right after starting", r.failing)
		if p, ok := rl.(interface{ tail() string }); ok {
			err = fmt.Errorf("%w; its last output:\n%s", err, p.tail())
		}
		select {
		case r.fatal <- err:
		default:
		}
		return
	}
	r.log.Warn("outbox demo: the relay exited by itself; starting another")
	if err := r.startLocked(); err != nil {
		select {
		case r.fatal <- err:
		default:
		}
	}
}

// notify passes a commit on to the running relay.
func (r *relays) notify() {
	r.mu.Lock()
	rl := r.cur
	r.mu.Unlock()
	if rl != nil {
		rl.notify()
	}
}

// chaos kills the relay kills times, evenly spread (with some jitter) over
// [start, start+span), starting a new one after a short pause each time,
// until ctx ends.
func (r *relays) chaos(ctx context.Context, start time.Time, span time.Duration, kills int) {
	slot := span / time.Duration(kills+1)
	for i := 1; i <= kills; i++ {
		at := start.Add(time.Duration(i)*slot + time.Duration(rand.Int64N(int64(slot/5)+1)) - slot/10)
		if !sleep(ctx, time.Until(at)) {
			return
		}
		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			return
		}
		victim := r.cur
		r.cur = nil
		r.kills++
		r.mu.Unlock()
		victim.kill() // dead from now on; no need to wait for it to wind down
		// Down for a moment, as a crashed process would be before its
		// supervisor starts it again.
		sleep(context.WithoutCancel(ctx), time.Duration(200+rand.IntN(500))*time.Millisecond)
		r.mu.Lock()
		err := r.startLocked()
		r.mu.Unlock()
		if err != nil {
			select {
			case r.fatal <- err:
			default:
			}
			return
		}
	}
}

// shutdown stops the running relay gracefully.
func (r *relays) shutdown() error {
	r.mu.Lock()
	r.stopping = true
	rl := r.cur
	r.mu.Unlock()
	if rl == nil {
		return nil
	}
	return rl.stop()
}

// counts returns the relays started, killed and crashed so far.
func (r *relays) counts() (starts, kills, crashes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts, r.kills, r.crashes
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// inProcessRelay is a relay in this process. Its kill is simulated: from
// that instant every call it makes to the store or the publisher fails, so
// it records nothing more, like a process that died; calls already under way
// finish, as they would on a server whose client died.
type inProcessRelay struct {
	relay  *outbox.Relay
	fence  *fence.Fence
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startInProcess starts a relay in this process, with its store and
// publisher behind a fence that kill closes.
func startInProcess(ctx context.Context, store outbox.Store, pub outbox.Publisher, cfg outbox.RelayConfig, wg *sync.WaitGroup) (relay, error) {
	f := new(fence.Fence)
	rl, err := outbox.NewRelay(f.Store(store), f.Publisher(pub), cfg)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &inProcessRelay{relay: rl, fence: f, cancel: cancel, done: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.err = rl.Run(rctx)
		close(r.done)
	}()
	return r, nil
}

func (r *inProcessRelay) kill() {
	r.fence.Kill()
	r.cancel() // its goroutines wind down; nothing they do reaches the store any more
}

func (r *inProcessRelay) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

func (r *inProcessRelay) exited() <-chan struct{} { return r.done }
func (r *inProcessRelay) notify()                 { r.relay.Notify() }
