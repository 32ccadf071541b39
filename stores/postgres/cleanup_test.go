package pgstore

import (
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// A Cleanup without a limit still deletes a bounded batch, and only
// delivered records older than asked.
func TestCleanupIsAlwaysBounded(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	fill(t, ctx, pool, s, outbox.DefaultCleanupBatch+500, 10, 16, true) // delivered 30 minutes ago
	fill(t, ctx, pool, s, 20, 10, 16, false)

	if n, err := s.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Hour}); err != nil || n != 0 {
		t.Fatalf("Cleanup(older than 1h) = %d, %v; want 0", n, err)
	}
	if n, err := s.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Minute}); err != nil || n != outbox.DefaultCleanupBatch {
		t.Fatalf("Cleanup(no limit) = %d, %v; want one batch of %d", n, err, outbox.DefaultCleanupBatch)
	}
	if n, err := s.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Minute, Limit: 10_000}); err != nil || n != 500 {
		t.Fatalf("Cleanup of the rest = %d, %v; want 500", n, err)
	}
	if n := count(t, ctx, pool, s); n != 20 {
		t.Fatalf("%d records left, want the 20 undelivered ones", n)
	}
}
