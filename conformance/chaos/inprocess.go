package chaos

import (
	"context"
	"log/slog"
	"sync"

	"github.com/txoutbox/txoutbox/conformance/chaos/fence"
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
		f := new(fence.Fence)
		r, err := outbox.NewRelay(f.Store(store), f.Publisher(pub), outbox.RelayConfig{
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
		return &inProcessRelay{fence: f, cancel: cancel, done: done}, nil
	}
}

type inProcessRelay struct {
	fence  *fence.Fence
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (r *inProcessRelay) Kill() error {
	r.fence.Kill()
	r.fence.Resume()
	r.cancel() // its goroutines wind down; nothing they do reaches the store any more
	return nil
}

func (r *inProcessRelay) Pause() error  { r.fence.Pause(); return nil }
func (r *inProcessRelay) Resume() error { r.fence.Resume(); return nil }

func (r *inProcessRelay) Stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}
