package conformance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// testTimeout bounds every suite test: 3 minutes, or the duration in
// OUTBOX_TEST_TIMEOUT. It is a deadlock guard, never an assertion about
// speed.
var testTimeout = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("OUTBOX_TEST_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 3 * time.Minute
}()

// hour is a lease or delay that outlives any test.
const hour = time.Hour

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newMessages returns n messages of topic and key with payloads "<key>-<i>".
func newMessages(topic, key string, n int) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: topic, Key: key, Payload: fmt.Appendf(nil, "%s-%d", key, i)}
	}
	return msgs
}

// write enqueues msgs in one transaction and commits it. It returns msgs
// with their IDs assigned.
func write(t *testing.T, ctx context.Context, ob Outbox, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	if err := tryWrite(ctx, ob, msgs...); err != nil {
		t.Fatalf("writing %d messages: %v", len(msgs), err)
	}
	return msgs
}

func tryWrite(ctx context.Context, ob Outbox, msgs ...outbox.Message) error {
	tx, err := ob.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func claim(t *testing.T, ctx context.Context, s outbox.Store, owner string, limit int, lease time.Duration) []outbox.Record {
	t.Helper()
	return claimStrict(t, ctx, s, owner, limit, lease, false)
}

func claimStrict(t *testing.T, ctx context.Context, s outbox.Store, owner string, limit int, lease time.Duration, strict bool) []outbox.Record {
	t.Helper()
	recs, err := s.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: limit, Lease: lease, StrictOrder: strict})
	if err != nil {
		t.Fatalf("Claim(owner %s, limit %d): %v", owner, limit, err)
	}
	return recs
}

func markDelivered(t *testing.T, ctx context.Context, s outbox.Store, owner string, recs ...outbox.Record) {
	t.Helper()
	if err := s.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: owner, IDs: recordIDs(recs)}); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
}

func release(t *testing.T, ctx context.Context, s outbox.Store, owner string, recs ...outbox.Record) {
	t.Helper()
	if err := s.Release(ctx, outbox.ReleaseParams{Owner: owner, IDs: recordIDs(recs)}); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func releaseAfter(t *testing.T, ctx context.Context, s outbox.Store, owner string, delay time.Duration, recs ...outbox.Record) {
	t.Helper()
	if err := s.Release(ctx, outbox.ReleaseParams{Owner: owner, IDs: recordIDs(recs), Delay: delay}); err != nil {
		t.Fatalf("Release(delay %v): %v", delay, err)
	}
}

func deadLetter(t *testing.T, ctx context.Context, s outbox.Store, owner, reason string, recs ...outbox.Record) {
	t.Helper()
	var letters []outbox.Failure
	for _, r := range recs {
		letters = append(letters, outbox.Failure{ID: r.ID, Error: reason})
	}
	if err := s.DeadLetter(ctx, outbox.DeadLetterParams{Owner: owner, Letters: letters}); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
}

func scheduleRetry(t *testing.T, ctx context.Context, s outbox.Store, owner, reason string, delay time.Duration, recs ...outbox.Record) {
	t.Helper()
	var retries []outbox.Retry
	for _, r := range recs {
		retries = append(retries, outbox.Retry{ID: r.ID, Error: reason, Delay: delay})
	}
	if err := s.ScheduleRetry(ctx, outbox.ScheduleRetryParams{Owner: owner, Retries: retries}); err != nil {
		t.Fatalf("ScheduleRetry: %v", err)
	}
}

// drain claims and delivers everything claimable and returns it in claim order.
func drain(t *testing.T, ctx context.Context, s outbox.Store, owner string) []outbox.Record {
	t.Helper()
	var all []outbox.Record
	for {
		recs := claim(t, ctx, s, owner, 100, hour)
		if len(recs) == 0 {
			return all
		}
		markDelivered(t, ctx, s, owner, recs...)
		all = append(all, recs...)
	}
}

func recordIDs(recs []outbox.Record) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

func messageIDs(msgs []outbox.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// pick returns the records of recs with the given IDs.
func pick(recs []outbox.Record, ids ...string) []outbox.Record {
	var out []outbox.Record
	for _, r := range recs {
		if slices.Contains(ids, r.ID) {
			out = append(out, r)
		}
	}
	return out
}

// without returns the records of recs without the given IDs.
func without(recs []outbox.Record, ids ...string) []outbox.Record {
	var out []outbox.Record
	for _, r := range recs {
		if !slices.Contains(ids, r.ID) {
			out = append(out, r)
		}
	}
	return out
}

func hasID(recs []outbox.Record, id string) bool {
	for _, r := range recs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// eventually polls cond until it holds; it fails t only if ctx ends first.
// It waits for things that take real time (a lease expiring), and asserts
// nothing about how long they take.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func requireTransactions(t *testing.T, h StoreHarness) {
	t.Helper()
	if h.WithoutTransactions != "" {
		t.Skipf("needs transactions: %s", h.WithoutTransactions)
	}
}

// requireConcurrentWriters skips tests that keep a write transaction open
// while other transactions write.
func requireConcurrentWriters(t *testing.T, h StoreHarness) {
	t.Helper()
	requireTransactions(t, h)
	if h.SingleWriter != "" {
		t.Skipf("needs concurrent write transactions: %s", h.SingleWriter)
	}
}
