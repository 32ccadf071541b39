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
// delivered more than p.OlderThan ago, lowest seq first, and never one
// delivered more recently. The table has no index of delivery times (every
// index costs Enqueue); Cleanup walks the delivered records in seq order
// (the delivered part of state_order) up to the first one delivered within
// p.OlderThan, and deletes the older ones below it, by primary key, so it
// never waits for a business transaction and reads about as many records
// as it deletes. Delivery order follows seq but for records delivered after
// retries: a record delivered late holds back the cleanup of those above
// it until it ages out itself, by at most the time its retries took.
func (s *Store) Cleanup(ctx context.Context, p outbox.CleanupParams) (int, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultCleanupLimit
	}
	cutoff := "UTC_TIMESTAMP(6) - INTERVAL " + strconv.FormatInt(micros(p.OlderThan), 10) + " MICROSECOND"
	var deleted int64
	err := s.withRetry(ctx, "cleanup", func(ctx context.Context) error {
		// The first record delivered within OlderThan, in seq order: the
		// walk stops below it. A statement of its own, so that the walk's
		// range has a literal bound (MariaDB does not bound a range scan
		// by a subquery's value).
		young, err := selectSeqs(ctx, s.db, "SELECT seq FROM "+s.table+
			" FORCE INDEX (state_order) WHERE state = 2 AND delivered_at >= "+cutoff+" ORDER BY seq LIMIT 1")
		if err != nil {
			return err
		}
		below := ""
		if len(young) > 0 {
			below = " AND seq < " + strconv.FormatInt(young[0], 10)
		}
		seqs, err := selectSeqs(ctx, s.db, "SELECT seq FROM "+s.table+
			" FORCE INDEX (state_order) WHERE state = 2"+below+" AND delivered_at < "+cutoff+
			" ORDER BY seq LIMIT "+strconv.Itoa(limit))
		if err != nil {
			return err
		}
		deleted, err = s.deleteSeqs(ctx, seqs, "x.state = 2")
		return err
	})
	return int(deleted), err
}
