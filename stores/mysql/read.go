package mysqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Read implements [outbox.Store] with one plain SELECT: no lock, no write.
// See readQuery for its plan.
func (s *Store) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("%w: mysqlstore: Read needs a positive limit", outbox.ErrInvalidConfig)
	}
	if len(p.Lanes) == 0 {
		return nil, nil
	}
	query, args := s.readQuery(p)
	var recs []outbox.Record
	err := s.withRetry(ctx, "read", func(ctx context.Context) error {
		recs = recs[:0]
		rows, err := s.db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// readQuery returns the statement of Read and its arguments (the skipped
// keys; every number, and the skipped IDs, are inlined).
//
// Its plan does not depend on the table's statistics: FORCE INDEX makes it
// a range scan of state_order from (0, AfterSeq) in seq order, which stops
// after Limit rows that pass the filters, with the lane tested in the index
// (index condition pushdown) before a row is fetched. Delivered records
// (state 2) and dead letters (state 1) lie outside the range; there is no
// sort. The skipped IDs and keys are filters on the rows fetched: a row
// the relay holds costs a fetch and a test, never a different plan. In
// strict order each candidate with a key costs one look-up in dead_keys,
// which holds the keys of dead letters only.
func (s *Store) readQuery(p outbox.ReadParams) (string, []any) {
	lanes := make([]int64, len(p.Lanes))
	for i, l := range p.Lanes {
		lanes[i] = int64(l)
	}
	var b strings.Builder
	var args []any
	b.WriteString("SELECT " + recordColumns("o") + " FROM " + s.table + " o FORCE INDEX (state_order)" +
		" WHERE o.state = 0 AND o.seq > " + strconv.FormatInt(max(0, p.AfterSeq), 10) +
		" AND o.lane IN " + inList(lanes))
	var skip []string
	for _, k := range p.SkipKeys {
		if k != "" { // records without a key are never skipped
			skip = append(skip, "?")
			args = append(args, []byte(k))
		}
	}
	if len(skip) > 0 {
		b.WriteString(" AND o.msg_key NOT IN (" + strings.Join(skip, ",") + ")")
	}
	// The skipped IDs are inlined: only canonical UUIDs can name a record
	// (Enqueue stores them in lowercase), and idList keeps nothing else.
	// The server sorts a list of constants once and tests each row with a
	// binary search, after fetching it (id is not in state_order).
	if ids, n := idList(p.SkipIDs); n > 0 {
		b.WriteString(" AND o.id NOT IN " + ids)
	}
	if p.StrictOrder {
		b.WriteString(" AND NOT EXISTS (SELECT 1 FROM " + s.table + " d FORCE INDEX (dead_keys)" +
			" WHERE d.dead_key = o.msg_key AND d.seq < o.seq)")
	}
	b.WriteString(" ORDER BY o.seq LIMIT " + strconv.Itoa(p.Limit))
	return b.String(), args
}
