package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Retrying bounds: the first pause, the longest, and one attempt.
const (
	retryFirstPause = 250 * time.Millisecond
	retryMaxPause   = 10 * time.Second
	attemptTimeout  = 15 * time.Second
)

// Retryable reports whether err means that a backend did not answer (it
// matches [outbox.ErrUnavailable], or an attempt ran out of time), so that
// trying again later may succeed.
func Retryable(err error) bool {
	return errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// Retry calls fn until it succeeds, fails with an error that is not
// [Retryable], ctx ends, or wait has passed (a negative wait never gives
// up; zero tries once). Each call gets its own deadline. Every failed
// attempt is logged once, with the pause before the next, so a backend
// that is down shows in the logs instead of a silent wait.
func (a *App) Retry(ctx context.Context, what string, wait time.Duration, fn func(context.Context) error) error {
	start := time.Now()
	pause := retryFirstPause
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				a.Logger().Info(what+": succeeded", slog.Int("attempts", attempt))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Retryable(err) || wait == 0 {
			return err
		}
		if wait > 0 && time.Since(start)+pause > wait {
			return fmt.Errorf("%s: gave up after %d attempts in %s (--wait): %w", what, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		a.Logger().Warn(what+": not reachable yet; retrying",
			slog.Int("attempt", attempt), slog.Duration("retry_in", pause), slog.Any("error", err))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, retryMaxPause)
	}
}

// DefaultWait is the default of --wait.
const DefaultWait = 30 * time.Second

// AddWaitFlag adds --wait, the time one-shot commands keep retrying a store
// or broker that does not answer.
func AddWaitFlag(fs *pflag.FlagSet, wait *time.Duration) {
	fs.DurationVar(wait, "wait", DefaultWait, "how long to keep retrying a store that does not answer, logging each attempt; 0 tries once")
}
