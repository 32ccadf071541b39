package outbox

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// exponential returns base*2^(n-1) capped at limit, with up to half of it
// taken off at random so that relays and records retrying together spread
// out. n counts from 1.
func exponential(n int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if half := int64(d / 2); half > 0 {
		d -= time.Duration(rand.Int64N(half + 1))
	}
	return d
}

// breaker pauses every worker of a relay while a backend (the store or the
// broker) is failing as a whole, and logs once per backoff step rather
// than once per failed call or record.
type breaker struct {
	what   string // "store" or "broker"
	log    *slog.Logger
	base   time.Duration
	limit  time.Duration
	mu     sync.Mutex
	fails  int
	resume time.Time
}

// failure records one failed call and starts (or lengthens) the pause.
func (b *breaker) failure(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if now.Before(b.resume) {
		return // another worker already counted this step
	}
	b.fails++
	wait := exponential(b.fails, b.base, b.limit)
	b.resume = now.Add(wait)
	level, msg := outageMessage(b.what, err)
	b.log.Log(context.Background(), level, msg,
		slog.Int("failures", b.fails), slog.Duration("retry_in", wait), slog.Any("error", err))
}

// outageMessage says what stops the relay, in terms of its cause: a backend
// that does not answer is an outage to wait out (a warning); refused
// credentials, a missing database and missing tables need someone to fix
// them (errors), though the relay keeps trying so that it resumes by
// itself once they are fixed.
func outageMessage(what string, err error) (slog.Level, string) {
	switch {
	case errors.Is(err, ErrSchemaMissing):
		return slog.LevelError, "outbox: the outbox tables do not exist (create them with the store's Migrate); pausing the relay"
	case errors.Is(err, ErrDatabaseMissing):
		return slog.LevelError, "outbox: the " + what + "'s database does not exist; pausing the relay"
	case errors.Is(err, ErrAccessDenied):
		return slog.LevelError, "outbox: the " + what + " refused access (check the credentials and grants); pausing the relay"
	case errors.Is(err, ErrReadTimeout):
		return slog.LevelWarn, "outbox: the " + what + " answered too slowly (a read or lane renewal outlived ReadTimeout: a lock held by another session, or an overloaded server); pausing the relay"
	case errors.Is(err, ErrUnavailable):
		return slog.LevelWarn, "outbox: " + what + " unavailable; pausing the relay"
	}
	return slog.LevelWarn, "outbox: " + what + " failed; pausing the relay"
}

// success ends the failure streak.
func (b *breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fails > 0 {
		b.log.Info("outbox: "+b.what+" is back", slog.Int("after_failures", b.fails))
		b.fails = 0
		b.resume = time.Time{}
	}
}

// wait blocks until the pause, if any, is over or ctx ends.
func (b *breaker) wait(ctx context.Context) error {
	b.mu.Lock()
	d := time.Until(b.resume)
	b.mu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	return sleep(ctx, d)
}

// sleep waits for d or until ctx ends, and returns ctx.Err() in that case.
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
