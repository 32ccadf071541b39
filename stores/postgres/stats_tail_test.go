package pgstore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// gatedPublisher holds every Publish until open is closed, and says on
// called that a Publish began.
type gatedPublisher struct {
	called chan struct{}
	open   chan struct{}
	pub    outbox.Publisher
}

func (g *gatedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	signal(g.called)
	select {
	case <-g.open:
		return g.pub.Publish(ctx, msgs)
	case <-ctx.Done():
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = ctx.Err()
		}
		return errs
	}
}

// statsUntil reads s's statistics until ok accepts them, and fails t when
// ctx ends first. before, if not nil, runs before each read.
func statsUntil(t *testing.T, ctx context.Context, s *Store, what string, before func(), ok func(outbox.Stats) bool) outbox.Stats {
	t.Helper()
	var last outbox.Stats
	for {
		if before != nil {
			before()
		}
		st, err := s.Stats(ctx)
		if err == nil {
			if ok(st) {
				return st
			}
			last = st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last stats: %+v, log %+v", what, ctx.Err(), last, last.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// The statistics of the tailing mode report the slot: no holder before a
// relay streams from it; while a relay that holds it cannot publish, the
// relay's owner as the holder, a lag in bytes, and a lag in seconds (the
// walsender's flush_lag) that grows as the relay stays stuck; once the
// relay publishes, a confirmed position past the message; and no holder
// again once the relay stopped.
func TestStatsReportsTheSlot(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := tailStore(t, Config{})

	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Log == nil || st.Log.Slot != s.Slot() || st.Log.Missing || st.Log.Holder != "" || st.Log.LagSeconds != nil || st.Log.Lost {
		t.Fatalf("before any relay: log stats %+v, want slot %q, present, no holder, no lag in seconds", st.Log, s.Slot())
	}

	const owner = "stats-holder"
	pub := &gatedPublisher{called: make(chan struct{}, 1), open: make(chan struct{}), pub: memory.NewPublisher(memory.PublisherConfig{})}
	relay, err := outbox.NewRelay(s, pub, outbox.RelayConfig{Owner: owner, PublishTimeout: 2 * time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	stopped := false
	stopRelay := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		}
	}
	t.Cleanup(stopRelay) // before tailStore's DropTail

	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return s.Enqueue(ctx, tx, outbox.Message{Topic: "stats.tail", Key: "k", Payload: []byte("stuck")})
	}); err != nil {
		t.Fatal(err)
	}
	var committed string // a position at or past the message's commit
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&committed); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pub.called:
	case <-ctx.Done():
		t.Fatal("the relay never published the message")
	}

	stuck := statsUntil(t, ctx, s, "a lag in seconds while the relay is stuck", nil, func(st outbox.Stats) bool {
		return st.Log != nil && st.Log.Holder == owner && st.Log.LagSeconds != nil && *st.Log.LagSeconds > 0
	})
	t.Logf("relay stuck: lag %d bytes, %.3fs; retained %d bytes", stuck.Log.LagBytes, *stuck.Log.LagSeconds, stuck.Log.RetainedBytes)
	if stuck.Log.LagBytes <= 0 || stuck.Log.RetainedBytes < stuck.Log.LagBytes {
		t.Errorf("relay stuck on a message: lag %d bytes, retained %d bytes; want a lag above 0 and at most what is retained",
			stuck.Log.LagBytes, stuck.Log.RetainedBytes)
	}
	statsUntil(t, ctx, s, "the lag in seconds to grow while the relay stays stuck", nil, func(st outbox.Stats) bool {
		return st.Log != nil && st.Log.LagSeconds != nil && *st.Log.LagSeconds > *stuck.Log.LagSeconds
	})

	close(pub.open)
	// since is the WAL written past the message's commit, read before the
	// stats: a lag no longer than since means that the confirmed position
	// is at or past the message.
	var since int64
	readSince := func() {
		err := s.pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint`, committed).Scan(&since)
		if err != nil {
			t.Fatal(err)
		}
	}
	statsUntil(t, ctx, s, "the slot to be confirmed past the message", readSince, func(st outbox.Stats) bool {
		return st.Log.Holder == owner && st.Log.LagBytes <= since
	})

	stopRelay()
	statsUntil(t, ctx, s, "no holder once the relay stopped", nil, func(st outbox.Stats) bool {
		return st.Log != nil && !st.Log.Missing && st.Log.Holder == ""
	})
}

// Without the slot, the statistics say that it is missing.
func TestStatsReportsAMissingSlot(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := tailStore(t, Config{})
	if err := s.DropTail(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Log == nil || !st.Log.Missing || st.Log.Slot != s.Slot() {
		t.Fatalf("log stats %+v, want slot %q missing", st.Log, s.Slot())
	}

	polled, _ := testStore(t, Config{})
	if st, err := polled.Stats(ctx); err != nil || st.Log != nil {
		t.Fatalf("Stats of a store that does not tail: log %+v, error %v; want nil", st.Log, err)
	}
}

// A store that does not tail reports the slot that the tailing mode left
// behind on its table, which retains WAL until it is dropped.
func TestStatsReportsASlotLeftBehind(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tailed := tailStore(t, Config{})
	s, err := New(tailed.pool, Config{Schema: tailed.cfg.Schema})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Log == nil || st.Log.Missing || st.Log.Slot != tailed.Slot() || st.Log.Holder != "" {
		t.Fatalf("log stats %+v, want slot %q present with no holder", st.Log, tailed.Slot())
	}
}
