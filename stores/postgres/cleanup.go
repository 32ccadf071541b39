package pgstore

import (
	"context"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Cleanup deletes at most p.Limit records delivered more than p.OlderThan
// ago, oldest deliveries first, and returns how many it deleted. A Limit of
// zero or less means [outbox.DefaultCleanupBatch]: a delete is always
// bounded, so that it never holds locks on, or writes WAL for, an
// unbounded number of rows. Undelivered and dead records are never
// deleted. It implements [outbox.Cleaner].
func (s *Store) Cleanup(ctx context.Context, p outbox.CleanupParams) (int, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = outbox.DefaultCleanupBatch
	}
	tag, err := s.pool.Exec(ctx, s.sql.cleanup, micros(max(p.OlderThan, 0)), limit)
	if err != nil {
		return 0, translate("cleanup", err)
	}
	return int(tag.RowsAffected()), nil
}
