package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// failingStore is a store whose lane leasing and reads always fail with err.
type failingStore struct {
	outbox.Store
	err error
}

func (f failingStore) SyncLanes(context.Context, outbox.SyncParams) (outbox.LaneView, error) {
	return outbox.LaneView{}, f.err
}

func (f failingStore) Read(context.Context, outbox.ReadParams) ([]outbox.Record, error) {
	return nil, f.err
}

// levelLog is a slog.Handler that keeps each record's level and message.
type levelLog struct {
	mu    sync.Mutex
	lines []string // "LEVEL message"
}

func (l *levelLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (l *levelLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levelLog) WithGroup(string) slog.Handler      { return l }

// find returns the first line containing substr, or "".
func (l *levelLog) find(substr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

// TestRelayLogsStoreFailuresByCause: a store that fails every read pauses
// the relay, and the log line says why: missing tables, refused access and a
// missing database are errors that name their cause, not "store
// unavailable"; an unreachable store stays a warning.
func TestRelayLogsStoreFailuresByCause(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string // the log line, level first
	}{
		{fmt.Errorf("claim: %w: relation \"public.outbox\" does not exist", outbox.ErrSchemaMissing),
			"ERROR outbox: the outbox tables do not exist (create them with the store's Migrate); pausing the relay"},
		{fmt.Errorf("%w: password authentication failed", outbox.ErrAccessDenied),
			"ERROR outbox: the store refused access (check the credentials and grants); pausing the relay"},
		{fmt.Errorf("%w: database \"app\" does not exist", outbox.ErrDatabaseMissing),
			"ERROR outbox: the store's database does not exist; pausing the relay"},
		{fmt.Errorf("%w: connection refused", outbox.ErrUnavailable),
			"WARN outbox: store unavailable; pausing the relay"},
		{errors.New("syntax error at or near \"SELEC\""),
			"WARN outbox: store failed; pausing the relay"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			logs := &levelLog{}
			cfg := fastConfig(t)
			cfg.Logger = slog.New(logs)
			store := failingStore{Store: memory.NewStore(memory.StoreConfig{}), err: tt.err}
			run(t, store, memory.NewPublisher(memory.PublisherConfig{}), cfg)
			eventually(t, ctx, "the relay to log the failed read", func() bool { return logs.find("pausing the relay") != "" })
			if got := logs.find("pausing the relay"); got != tt.want {
				t.Errorf("logged %q; want %q", got, tt.want)
			}
		})
	}
}

// stopOnSchemaMissing is the Observer that Run's documentation suggests to
// stop a relay whose tables do not exist.
type stopOnSchemaMissing struct {
	cancel context.CancelCauseFunc
}

func (o stopOnSchemaMissing) ObserveRead(e outbox.ReadEvent) {
	if errors.Is(e.Err, outbox.ErrSchemaMissing) {
		o.cancel(e.Err)
	}
}
func (o stopOnSchemaMissing) ObserveLanes(e outbox.LaneEvent) {
	if errors.Is(e.Err, outbox.ErrSchemaMissing) {
		o.cancel(e.Err)
	}
}
func (stopOnSchemaMissing) ObserveBatch(outbox.BatchEvent) {}

// TestRelayStoppedByObserver: an Observer that cancels Run's context on a
// store error stops the relay, which then logs no pause for that error.
func TestRelayStoppedByObserver(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(testCtx(t))
	defer cancel(nil)
	logs := &levelLog{}
	cfg := fastConfig(t)
	cfg.Logger = slog.New(logs)
	cfg.Concurrency = 3
	cfg.Observer = stopOnSchemaMissing{cancel: cancel}
	missing := fmt.Errorf("sync lanes: %w", outbox.ErrSchemaMissing)
	r, err := outbox.NewRelay(failingStore{Store: memory.NewStore(memory.StoreConfig{}), err: missing},
		memory.NewPublisher(memory.PublisherConfig{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if cause := context.Cause(ctx); !errors.Is(cause, outbox.ErrSchemaMissing) {
		t.Fatalf("Run returned, but the context ended with %v; want the observer's ErrSchemaMissing", cause)
	}
	if line := logs.find("pausing the relay"); line != "" {
		t.Errorf("a relay stopped by its observer logged %q", line)
	}
}

// TestRelayLogsBrokerRefusingAccess: a broker that refuses the credentials
// pauses the relay like an outage (its errors match ErrUnavailable too, so
// no attempt is spent), and the log line says that access was refused.
func TestRelayLogsBrokerRefusingAccess(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, pub := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	pub.SetReject(func(outbox.Message) error {
		return fmt.Errorf("%w: %w: SASL authentication failed", outbox.ErrUnavailable, outbox.ErrAccessDenied)
	})
	enqueue(t, store, outbox.Message{Topic: "t", Key: "k"})
	logs := &levelLog{}
	cfg := fastConfig(t)
	cfg.Logger = slog.New(logs)
	cfg.MaxAttempts = 1
	run(t, store, pub, cfg)
	eventually(t, ctx, "the relay to pause for the broker", func() bool { return logs.find("pausing the relay") != "" })
	want := "ERROR outbox: the broker refused access (check the credentials and grants); pausing the relay"
	if got := logs.find("pausing the relay"); got != want {
		t.Errorf("logged %q; want %q", got, want)
	}
	if dead, _ := store.ListDead(ctx, outbox.ListDeadParams{}); len(dead) != 0 {
		t.Errorf("a broker refusing access dead-lettered %d messages", len(dead))
	}
}

// slowReads is a store whose reads wait until their context ends.
type slowReads struct{ outbox.Store }

func (s slowReads) Read(ctx context.Context, _ outbox.ReadParams) ([]outbox.Record, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("%w: %w", outbox.ErrUnavailable, ctx.Err()) // as a driver might wrap it
}

// TestRelayReportsReadTimeout: a read that outlives ReadTimeout is logged as
// a slow store, not as an unavailable one, and its error matches
// ErrReadTimeout.
func TestRelayReportsReadTimeout(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	logs := &levelLog{}
	cfg := fastConfig(t)
	cfg.Logger = slog.New(logs)
	cfg.ReadTimeout = 20 * time.Millisecond
	obs := &readErrors{}
	cfg.Observer = obs
	run(t, slowReads{memory.NewStore(memory.StoreConfig{})}, memory.NewPublisher(memory.PublisherConfig{}), cfg)
	eventually(t, ctx, "the relay to log the slow read", func() bool { return logs.find("pausing the relay") != "" })
	if got := logs.find("pausing the relay"); !strings.Contains(got, "answered too slowly") {
		t.Errorf("logged %q; want the slow store named as such", got)
	}
	if err := obs.first(); !errors.Is(err, outbox.ErrReadTimeout) {
		t.Errorf("the observer saw %v; want an error matching ErrReadTimeout", err)
	}
}

type readErrors struct {
	mu  sync.Mutex
	err error
}

func (o *readErrors) ObserveRead(e outbox.ReadEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = e.Err
	}
}
func (o *readErrors) ObserveBatch(outbox.BatchEvent) {}
func (o *readErrors) ObserveLanes(outbox.LaneEvent)  {}
func (o *readErrors) first() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}
