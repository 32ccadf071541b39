package sqlitestore

import (
	"context"
	"fmt"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Cleanup implements [outbox.Cleaner]: it deletes at most p.Limit records
// delivered more than p.OlderThan ago, oldest delivery first, in one short
// write statement. The delivered index makes each batch cost its size,
// however many records are kept.
func (s *Store) Cleanup(ctx context.Context, p outbox.CleanupParams) (int, error) {
	if p.Limit <= 0 {
		return 0, fmt.Errorf("%w: sqlitestore: Cleanup needs a positive limit", outbox.ErrInvalidConfig)
	}
	n, err := s.execStmt(ctx, "Cleanup", s.q.cleanup, func(now int64) []any {
		return []any{now - p.OlderThan.Microseconds(), p.Limit}
	})
	return int(n), err
}
