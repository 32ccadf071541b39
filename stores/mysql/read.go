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
// keys; every number, and the skipped Seqs or IDs, are inlined).
//
// Its plan does not depend on the table's statistics: FORCE INDEX makes it
// a range scan of state_order from (0, AfterSeq) in seq order, which stops
// after Limit rows that pass the filters, with the lane and the skipped
// Seqs tested in the index (index condition pushdown) before a row is
// fetched. Delivered records (state 2) and dead letters (state 1) lie
// outside the range; there is no sort. The skipped keys (and IDs, when no
// Seqs are given) are filters on the rows fetched, never a different plan. In
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
	// The records the relay holds are left out by Seq when it gives them
	// (Seqs are unique here: an AUTO_INCREMENT), by ID otherwise; both
	// lists are inlined. A Seq is in state_order, so the test runs on the
	// index entry (index condition pushdown) and a held record costs no
	// row fetch; a run of consecutive held Seqs is one NOT BETWEEN. Only
	// canonical UUIDs can name a record (Enqueue stores them in
	// lowercase), and idList keeps nothing else; an ID is tested after the
	// row is fetched (id is not in state_order).
	prefix := ""
	if len(p.SkipSeqs) > 0 {
		cond, single := skipSeqs(p.SkipSeqs)
		b.WriteString(cond)
		if info := s.server.Load(); info != nil && info.mariaDB && single >= 1000 {
			// MariaDB would turn a list of 1,000 constants or more into
			// a subquery on a table it builds at each read, which the
			// index cannot test: kept a list, the Seqs are tested on
			// the index entry (1,500 scattered Seqs: 1.4 → 1.0 ms a
			// read, BenchmarkReadSkipIDs).
			prefix = "SET STATEMENT in_predicate_conversion_threshold=0 FOR "
		}
	} else if ids, n := idList(p.SkipIDs); n > 0 {
		b.WriteString(" AND o.id NOT IN " + ids)
	}
	if p.StrictOrder {
		b.WriteString(" AND NOT EXISTS (SELECT 1 FROM " + s.table + " d FORCE INDEX (dead_keys)" +
			" WHERE d.dead_key = o.msg_key AND d.seq < o.seq)")
	}
	b.WriteString(" ORDER BY o.seq LIMIT " + strconv.Itoa(p.Limit))
	return prefix + b.String(), args
}

// A run of at least minRun consecutive skipped Seqs, of at most maxRuns
// runs (the longest), is a range the scan of state_order passes over; the
// other skipped Seqs are tested on each index entry.
const (
	minRun  = 8
	maxRuns = 64
)

// skipSeqs returns the condition that leaves out the Seqs of ranges, and
// how many single Seqs it lists: a NOT BETWEEN per long run, which the
// range scan passes over, and one NOT IN for the other Seqs, made an
// expression (seq + 0) so that it is a test of each index entry (the
// server sorts the list once and tests a value by binary search) rather
// than a range of its own: as ranges, 1,500 scattered Seqs cost as many
// index dives to plan the read and as many to run it (10 ms a read, 1.3 ms
// as a test; BenchmarkReadHalfTheLanes).
func skipSeqs(ranges []outbox.SeqRange) (string, int) {
	var b strings.Builder
	runs, single := outbox.LongRuns(ranges, minRun, maxRuns)
	for _, r := range runs {
		fmt.Fprintf(&b, " AND o.seq NOT BETWEEN %d AND %d", r.From, r.To)
	}
	if len(single) > 0 {
		b.WriteString(" AND o.seq + 0 NOT IN " + inList(single))
	}
	return b.String(), len(single)
}
