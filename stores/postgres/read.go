package pgstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Read returns up to p.Limit pending records of the lanes p.Lanes after
// p.AfterSeq, in Seq order. It implements [outbox.Store].
//
// It reads only (no lock, no write), with one SELECT that walks the partial
// index of pending records in Seq order and stops after p.Limit records
// that pass its filters: the lane, the skipped records, the skipped keys,
// and with p.StrictOrder no dead letter of the key before the record. The
// records to skip are taken from p.SkipSeqs when given (Seqs come from a
// sequence: unique), else from p.SkipIDs. A long run of skipped Seqs is
// passed over in the index (see readRanges); other skipped records are
// tested on the heap row, like the lane: each one at the head of the lanes
// costs a heap fetch. It is sent in
// one round trip after a statement that disables sorts, sequential and
// bitmap scans for the rest of its implicit transaction, so that its plan
// does not depend on the table's statistics (see readSQL).
func (s *Store) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("%w: pgstore: Read needs a positive limit", outbox.ErrInvalidConfig)
	}
	query, args := s.readStatement(p)
	if query == "" {
		return nil, ctx.Err()
	}
	b := &pgx.Batch{}
	b.Queue(s.sql.planGuard)
	var recs []outbox.Record
	b.Queue(query, args...).Query(func(rows pgx.Rows) error {
		var err error
		recs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Record, error) {
			return scanRecord(row)
		})
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, translate("read", err)
	}
	return recs, nil
}

// readStatement returns Read's statement for p and its arguments, or an
// empty statement when p names no lane.
func (s *Store) readStatement(p outbox.ReadParams) (string, []any) {
	lanes := make([]int32, 0, len(p.Lanes))
	for _, l := range p.Lanes {
		if l >= 0 && l < outbox.MaxLanes {
			lanes = append(lanes, int32(l))
		}
	}
	if len(lanes) == 0 {
		return "", nil
	}
	var skip []string
	for _, k := range p.SkipKeys {
		if k != "" { // records without a key are never skipped
			skip = append(skip, k)
		}
	}
	ids := []pgtype.UUID{}
	lo, hi, seqs := readRanges(max(p.AfterSeq, 0), p.SkipSeqs)
	if len(p.SkipSeqs) == 0 {
		ids = uuidBytes(p.SkipIDs)
	}
	args := []any{lanes, lo, p.Limit, ids, hi, seqs}
	if len(skip) > 0 {
		args = append(args, skip)
	}
	return s.sql.read[readVariant(len(skip) > 0, p.StrictOrder)], args
}

// Read passes over a run of at least minGap consecutive skipped Seqs
// (reading the Seqs on either side of it as two ranges), over at most
// maxGaps runs, the longest, per call; the other skipped Seqs are tested
// on the rows. A range costs a descent of pending_idx, a skipped row a
// heap fetch.
const (
	minGap  = 8
	maxGaps = 64
)

// readRanges returns the ranges of Seq that Read reads, after is the
// Seq to read after, as their lower and upper bounds (both excluded), and
// the skipped Seqs to test on the rows: the runs of skip are passed over
// when long enough (see minGap).
func readRanges(after int64, skip []outbox.SeqRange) (lo, hi, single []int64) {
	var later []outbox.SeqRange
	for _, r := range skip {
		if r.To > after { // the others are not read at all
			later = append(later, r)
		}
	}
	runs, single := outbox.LongRuns(later, minGap, maxGaps)
	from := after
	for _, r := range runs {
		if r.From > from+1 {
			lo, hi = append(lo, from), append(hi, r.From)
		}
		from = max(from, r.To)
	}
	lo, hi = append(lo, from), append(hi, math.MaxInt64)
	return lo, hi, single
}

// scanRecord reads the recordColumns of a row, and then extra.
func scanRecord(row pgx.Row, extra ...any) (outbox.Record, error) {
	var r outbox.Record
	var headers []byte
	var notBefore *time.Time
	err := row.Scan(append([]any{&r.Seq, &r.ID, &r.Lane, &r.Topic, &r.Key, &r.Payload, &headers,
		&r.CreatedAt, &r.Attempts, &r.LastError, &notBefore}, extra...)...)
	if err != nil {
		return r, err
	}
	r.CreatedAt = r.CreatedAt.UTC()
	if notBefore != nil {
		r.NotBefore = notBefore.UTC()
	}
	if len(headers) > 0 {
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			return r, fmt.Errorf("record %s has headers that are not a JSON object of strings: %w", r.ID, err)
		}
	}
	return r, nil
}

// uuidBytes returns the IDs that are UUIDs as 16-byte values, which pgx
// sends in binary (a few thousand of them in text would cost the client
// more to quote and the server more to parse); the others cannot be in the
// outbox.
func uuidBytes(ids []string) []pgtype.UUID {
	out := make([]pgtype.UUID, 0, len(ids))
	for _, id := range ids {
		id, ok := normalizeID(id)
		if !ok {
			continue
		}
		var u pgtype.UUID
		if _, err := hex.Decode(u.Bytes[:], []byte(strings.ReplaceAll(id, "-", ""))); err != nil {
			continue
		}
		u.Valid = true
		out = append(out, u)
	}
	return out
}
