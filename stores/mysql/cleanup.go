package mysqlstore

import (
	"context"
	"strconv"

	outbox "github.com/txoutbox/txoutbox/core"
)

// DefaultCleanupLimit is the batch of Cleanup when its Limit is not
// positive.
const DefaultCleanupLimit = 1000

// Cleanup implements [outbox.Cleaner]: it deletes up to p.Limit records
// delivered more than p.OlderThan ago, oldest delivery first. It reads only
// the records it deletes (the cleanup index), and deletes them by primary
// key, so it never waits for a business transaction.
func (s *Store) Cleanup(ctx context.Context, p outbox.CleanupParams) (int, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultCleanupLimit
	}
	var deleted int64
	err := s.withRetry(ctx, "cleanup", func(ctx context.Context) error {
		seqs, err := selectSeqs(ctx, s.db, "SELECT seq FROM "+s.table+
			" FORCE INDEX (cleanup) WHERE delivered_at < UTC_TIMESTAMP(6) - INTERVAL "+strconv.FormatInt(micros(p.OlderThan), 10)+" MICROSECOND"+
			" ORDER BY delivered_at LIMIT "+strconv.Itoa(limit))
		if err != nil {
			return err
		}
		deleted, err = s.deleteSeqs(ctx, seqs, "x.state = 2")
		return err
	})
	return int(deleted), err
}
