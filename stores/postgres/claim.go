package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Claim leases up to p.Limit deliverable records to p.Owner. It implements
// [outbox.Store].
//
// Claims on one table are serialized: each takes a transaction-scoped
// advisory lock, then, in READ COMMITTED, runs one UPDATE that picks records, leases them and
// counts an attempt, and commits, all in one round trip (one pgx batch, one
// implicit transaction). The lock is held only while the server executes
// the UPDATE, never across a network round trip. Publishing, which takes
// the time, stays parallel. README.md explains why this keeps per-key order
// across relays and what it costs.
func (s *Store) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	if p.Owner == "" || p.Limit <= 0 || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: pgstore: Claim needs an owner, a positive limit and a positive lease", outbox.ErrInvalidConfig)
	}
	s.walkMu.Lock()
	cursor := s.walkFrom
	s.walkMu.Unlock()

	b := &pgx.Batch{}
	// READ COMMITTED whatever the session's default: the claim needs a
	// snapshot taken after the lock is granted, not when the lock is asked.
	b.Queue(s.sql.readCommitted)
	b.Queue(s.sql.lockClaims, s.names.claimKey)
	b.Queue(s.sql.claim, p.Owner, p.Limit, p.StrictOrder, micros(p.Lease), s.claimWindow(p.Limit), cursor)
	br := s.pool.SendBatch(ctx, b)
	var walked []string // keys of records found by walking the keys
	recs, err := func() ([]outbox.Record, error) {
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return nil, err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Record, error) {
			var r outbox.Record
			var headers []byte
			var phase int
			err := row.Scan(&r.Seq, &r.ID, &r.Topic, &r.Key, &r.Payload, &headers, &r.CreatedAt, &r.Attempts, &r.LastError, &phase)
			if err != nil {
				return r, err
			}
			if phase == phaseWalk && r.Key != "" {
				walked = append(walked, r.Key)
			}
			return r, finishRecord(&r, headers)
		})
	}()
	// Close reads the outcome of the implicit commit: records are handed
	// out only once their leases are known to be committed. Had the commit
	// happened after all, they stay leased until the lease expires.
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, translate("claim", err)
	}
	// The next walk starts after the last key this one took, so that every
	// key gets its turn; a walk that took nothing starts over.
	s.walkMu.Lock()
	s.walkFrom = nextWalk(cursor, walked)
	s.walkMu.Unlock()
	slices.SortFunc(recs, func(a, b outbox.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	return recs, nil
}

// nextWalk returns where the walk after one that started after cursor and
// took records of keys walked should start: after the last key it took. The
// walk visits the keys above cursor first, then wraps around to those up
// to cursor, so the last key is the highest of the second lap, if any.
func nextWalk(cursor string, walked []string) string {
	var on, round []string
	for _, k := range walked {
		if cursor != "" && k <= cursor {
			round = append(round, k)
		} else {
			on = append(on, k)
		}
	}
	switch {
	case len(round) > 0:
		return slices.Max(round)
	case len(on) > 0:
		return slices.Max(on)
	}
	return ""
}

// phaseWalk is the phase column of a record that the claim found by walking
// the keys past a clogged window (1: in the window).
const phaseWalk = 2

// defaultClaimWindow is how many of the oldest undelivered records a claim
// of limit records examines before it walks the keys: room for the batches
// other relays hold leased at the front, and for the limit itself.
func defaultClaimWindow(limit int) int { return 4*limit + 100 }

// MarkDelivered records that the broker has the records, whoever holds
// their lease. It implements [outbox.Store].
func (s *Store) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	ids := validIDs(p.IDs)
	if len(ids) == 0 {
		return ctx.Err()
	}
	_, err := s.pool.Exec(ctx, s.sql.markDelivered, ids)
	return translate("mark delivered", err)
}

// ScheduleRetry makes records leased to p.Owner deliverable again after
// their delay. It implements [outbox.Store].
func (s *Store) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	ids := make([]string, 0, len(p.Retries))
	errs := make([]string, 0, len(p.Retries))
	delays := make([]int64, 0, len(p.Retries))
	for _, r := range p.Retries {
		if id, ok := normalizeID(r.ID); ok {
			ids, errs, delays = append(ids, id), append(errs, r.Error), append(delays, micros(r.Delay))
		}
	}
	if len(ids) == 0 {
		return ctx.Err()
	}
	_, err := s.pool.Exec(ctx, s.sql.scheduleRetry, p.Owner, ids, errs, delays)
	return translate("schedule retry", err)
}

// DeadLetter moves records leased to p.Owner to the dead letters. It
// implements [outbox.Store].
func (s *Store) DeadLetter(ctx context.Context, p outbox.DeadLetterParams) error {
	ids := make([]string, 0, len(p.Letters))
	errs := make([]string, 0, len(p.Letters))
	for _, f := range p.Letters {
		if id, ok := normalizeID(f.ID); ok {
			ids, errs = append(ids, id), append(errs, f.Error)
		}
	}
	if len(ids) == 0 {
		return ctx.Err()
	}
	_, err := s.pool.Exec(ctx, s.sql.deadLetter, p.Owner, ids, errs)
	return translate("dead-letter", err)
}

// Release returns records leased to p.Owner, undoing the attempt their
// claim counted, claimable after p.Delay, and wakes listening relays when
// they are claimable at once. It implements [outbox.Store].
func (s *Store) Release(ctx context.Context, p outbox.ReleaseParams) error {
	ids := validIDs(p.IDs)
	if len(ids) == 0 {
		return ctx.Err()
	}
	b := &pgx.Batch{}
	b.Queue(s.sql.release, p.Owner, ids, micros(p.Delay))
	if !s.cfg.DisableNotify && p.Delay <= 0 {
		b.Queue(s.sql.notify, s.names.channel)
	}
	return translate("release", s.pool.SendBatch(ctx, b).Close())
}

func finishRecord(r *outbox.Record, headers []byte) error {
	r.CreatedAt = r.CreatedAt.UTC()
	if len(headers) > 0 {
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			return fmt.Errorf("record %s has headers that are not a JSON object of strings: %w", r.ID, err)
		}
	}
	return nil
}

// validIDs keeps the IDs that are UUIDs, in canonical lowercase form. The
// others cannot be in the outbox (Enqueue accepts UUIDs only), and
// contracts say unknown IDs are ignored.
func validIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id, ok := normalizeID(id); ok {
			out = append(out, id)
		}
	}
	return out
}

func normalizeID(id string) (string, bool) {
	// A message with this ID and a topic is valid exactly when the ID is
	// a UUID in canonical text form.
	if (&outbox.Message{ID: id, Topic: "-"}).Validate(outbox.Limits{}) != nil {
		return "", false
	}
	return strings.ToLower(id), true
}
