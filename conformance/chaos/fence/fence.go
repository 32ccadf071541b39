// Package fence simulates the crash of a relay that runs in the same
// process as its store: a [Fence] stands between the relay and its store and
// publisher, and once killed every call the relay makes through it fails,
// so the relay records nothing more and its lane leases stay until they expire,
// like a process that died. Paused, every call waits until it is resumed,
// like a process stopped with SIGSTOP. Calls already under way finish, as they would on
// a server whose client died.
//
// It serves [github.com/txoutbox/txoutbox/conformance/chaos.InProcess] and
// `outbox demo --chaos --in-process`; it imports no testing package.
package fence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ErrKilled is what every call through a killed fence returns.
var ErrKilled = errors.New("fence: the relay was killed")

// A Fence is open until Kill. The zero value is open and ready to use.
type Fence struct {
	dead atomic.Bool

	mu     sync.Mutex
	paused chan struct{} // closed by Resume; nil while not paused
}

// Kill closes the fence for good.
func (f *Fence) Kill() { f.dead.Store(true) }

// Pause freezes the relay, as SIGSTOP freezes a process: every call it
// makes through the fence waits until Resume, whatever its context says.
// Calls already under way finish.
func (f *Fence) Pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused == nil {
		f.paused = make(chan struct{})
	}
}

// Resume lets a paused relay go on, as SIGCONT does.
func (f *Fence) Resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused != nil {
		close(f.paused)
		f.paused = nil
	}
}

// Store returns store behind the fence. The result is an [outbox.Listener]
// when store is one, so that the relay keeps its wake-ups, and always an
// [outbox.LogTailer], which tails store's log through the fence when store
// is one (and says [outbox.ErrUnsupported] otherwise); the other optional
// capabilities (cleanup, stats, …) are left out.
func (f *Fence) Store(store outbox.Store) outbox.Store {
	s := &fencedStore{Store: store, f: f}
	if l, ok := store.(outbox.Listener); ok {
		return &fencedListener{fencedStore: s, listener: l}
	}
	return s
}

// Publisher returns pub behind the fence.
func (f *Fence) Publisher(pub outbox.Publisher) outbox.Publisher {
	return &fencedPublisher{pub: pub, f: f}
}

func (f *Fence) check() error {
	f.mu.Lock()
	wait := f.paused
	f.mu.Unlock()
	if wait != nil {
		<-wait
	}
	if f.dead.Load() {
		return ErrKilled
	}
	return nil
}

type fencedStore struct {
	outbox.Store
	f *Fence
}

func (s *fencedStore) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	if err := s.f.check(); err != nil {
		return outbox.LaneView{}, err
	}
	return s.Store.SyncLanes(ctx, p)
}

func (s *fencedStore) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if err := s.f.check(); err != nil {
		return nil, err
	}
	return s.Store.TakeLanes(ctx, p)
}

func (s *fencedStore) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	if err := s.f.check(); err != nil {
		return err
	}
	return s.Store.ReleaseLanes(ctx, p)
}

func (s *fencedStore) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if err := s.f.check(); err != nil {
		return nil, err
	}
	return s.Store.Read(ctx, p)
}

func (s *fencedStore) Settle(ctx context.Context, p outbox.SettleParams) error {
	if err := s.f.check(); err != nil {
		return err
	}
	return s.Store.Settle(ctx, p)
}

// TailLog implements [outbox.LogTailer]: store's log, whose stream is
// fenced like the store: once killed, its calls fail and it neither
// acknowledges nor renews its hold (so the hold lapses, as a dead process's
// would); paused, they wait.
func (s *fencedStore) TailLog(ctx context.Context, p outbox.TailParams) (outbox.LogStream, error) {
	t, ok := s.Store.(outbox.LogTailer)
	if !ok {
		return nil, fmt.Errorf("fence: %w: the store does not tail its log", outbox.ErrUnsupported)
	}
	if err := s.f.check(); err != nil {
		return nil, err
	}
	ls, err := t.TailLog(ctx, p)
	if err != nil {
		return nil, err
	}
	return &fencedStream{ls: ls, f: s.f}, nil
}

type fencedStream struct {
	ls outbox.LogStream
	f  *Fence
}

func (s *fencedStream) Next(ctx context.Context, max int) ([]outbox.LogRecord, error) {
	if err := s.f.check(); err != nil {
		return nil, err
	}
	return s.ls.Next(ctx, max)
}

func (s *fencedStream) Ack(pos uint64) {
	if s.f.check() == nil {
		s.ls.Ack(pos)
	}
}

func (s *fencedStream) Park(ctx context.Context, recs []outbox.Parked) error {
	if err := s.f.check(); err != nil {
		return err
	}
	return s.ls.Park(ctx, recs)
}

func (s *fencedStream) ParkedKeys(ctx context.Context, strictOrder bool) ([]string, error) {
	if err := s.f.check(); err != nil {
		return nil, err
	}
	return s.ls.ParkedKeys(ctx, strictOrder)
}

func (s *fencedStream) Renew() {
	if s.f.check() == nil {
		s.ls.Renew()
	}
}

// Close lets the hold go, killed or not: the connection of a process that
// died is closed by its system.
func (s *fencedStream) Close() error { return s.ls.Close() }

type fencedListener struct {
	*fencedStore
	listener outbox.Listener
}

func (s *fencedListener) Listen(ctx context.Context) (<-chan struct{}, error) {
	if err := s.f.check(); err != nil {
		return nil, err
	}
	return s.listener.Listen(ctx)
}

type fencedPublisher struct {
	pub outbox.Publisher
	f   *Fence
}

func (p *fencedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if err := p.f.check(); err != nil {
		res := make([]error, len(msgs))
		for i := range res {
			res[i] = err
		}
		return res
	}
	return p.pub.Publish(ctx, msgs)
}
