package chaos

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	outbox "github.com/txoutbox/txoutbox/core"
)

// InProcess returns a [Target.StartRelay] that runs relays in this process,
// for stores that cannot be shared with another process (the in-memory
// reference). Kill simulates a crash: from that instant every call the
// relay makes to the store or the publisher fails, so it records nothing
// more and its leases stay until they expire; calls already under way
// finish, as they would on a server when the client dies.
func InProcess(store outbox.Store, pub outbox.Publisher, logger *slog.Logger) func(context.Context, RelaySpec) (Relay, error) {
	return func(ctx context.Context, spec RelaySpec) (Relay, error) {
		dead := new(atomic.Bool)
		r, err := outbox.NewRelay(&fencedStore{Store: store, dead: dead}, &fencedPublisher{pub: pub, dead: dead}, outbox.RelayConfig{
			Owner:          spec.Owner,
			BatchSize:      spec.BatchSize,
			Concurrency:    spec.Concurrency,
			Lease:          spec.Lease,
			PublishTimeout: spec.PublishTimeout,
			MaxAttempts:    spec.MaxAttempts,
			MinRetryDelay:  spec.MinRetryDelay,
			MaxRetryDelay:  spec.MaxRetryDelay,
			PollInterval:   spec.PollInterval,
			Logger:         logger,
		})
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		return &inProcessRelay{dead: dead, cancel: cancel, done: done}, nil
	}
}

var errCrashed = errors.New("chaos: the relay process was killed")

type inProcessRelay struct {
	dead   *atomic.Bool
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (r *inProcessRelay) Kill() error {
	r.dead.Store(true)
	r.cancel() // its goroutines wind down; nothing they do reaches the store any more
	return nil
}

func (r *inProcessRelay) Stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

type fencedStore struct {
	outbox.Store
	dead *atomic.Bool
}

func (s *fencedStore) check() error {
	if s.dead.Load() {
		return errCrashed
	}
	return nil
}

func (s *fencedStore) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.Store.Claim(ctx, p)
}

func (s *fencedStore) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.MarkDelivered(ctx, p)
}

func (s *fencedStore) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.ScheduleRetry(ctx, p)
}

func (s *fencedStore) DeadLetter(ctx context.Context, p outbox.DeadLetterParams) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.DeadLetter(ctx, p)
}

func (s *fencedStore) Release(ctx context.Context, p outbox.ReleaseParams) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.Release(ctx, p)
}

type fencedPublisher struct {
	pub  outbox.Publisher
	dead *atomic.Bool
}

func (p *fencedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if p.dead.Load() {
		res := make([]error, len(msgs))
		for i := range res {
			res[i] = errCrashed
		}
		return res
	}
	return p.pub.Publish(ctx, msgs)
}
