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
// trying again later may succeed. A refusal that someone must fix
// ([NeedsFix]) is not retryable, even from a broker whose errors match
// ErrUnavailable too.
func Retryable(err error) bool {
	return (errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)) && !NeedsFix(err)
}

// GaveUpError is the error of [App.Retry] when wait has passed: the last
// attempt's error, and how long it tried.
type GaveUpError struct {
	What     string        // what was tried, e.g. "read the statistics of …"
	Attempts int           // attempts made
	Elapsed  time.Duration // time from the first attempt to giving up
	Wait     time.Duration // the --wait that ran out
	Err      error         // the last attempt's error
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("%s: gave up after %d attempts in %s (--wait %s): %v", e.What, e.Attempts, e.Elapsed.Round(time.Millisecond), e.Wait, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *GaveUpError) Unwrap() error { return e.Err }

// Retry calls fn until it succeeds, fails with an error that is not
// [Retryable], ctx ends, or wait has passed (a negative wait never gives
// up; zero tries once); then it returns a *[GaveUpError]. Each call gets its
// own deadline. Every failed attempt is logged once, explained
// ([App.Explain]), with the pause before the next, so a backend that is
// down shows in the logs instead of a silent wait.
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
			return &GaveUpError{What: what, Attempts: attempt, Elapsed: time.Since(start), Wait: wait, Err: err}
		}
		a.Logger().Warn(what+": not reachable yet; retrying",
			slog.Int("attempt", attempt), slog.Duration("retry_in", pause), slog.String("error", a.Explain(err)))
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
