package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Claim implements [outbox.Store].
//
// SQLite has one writer at a time, so the claim needs no row locks: one
// UPDATE ... RETURNING selects the claimable records and leases them under
// the write lock, which no other connection, in this process or another,
// can interleave with. Before that it checks, with a read that blocks no
// one, whether anything is claimable at all, so an idle relay never makes
// writers wait.
func (s *Store) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	if p.Owner == "" || p.Limit <= 0 || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: sqlitestore: Claim needs an owner, a positive limit and a positive lease", outbox.ErrInvalidConfig)
	}
	probe, err := s.stmt(ctx, s.q.probe)
	if err != nil {
		return nil, translate("Claim", err)
	}
	var any bool
	if err := probe.QueryRowContext(ctx, s.clock(), p.StrictOrder, p.Limit).Scan(&any); err != nil {
		return nil, translate("Claim", err)
	}
	if !any {
		return nil, nil
	}
	claim, err := s.stmt(ctx, s.q.claim)
	if err != nil {
		return nil, translate("Claim", err)
	}
	var recs []outbox.Record
	err = s.write(ctx, "Claim", func(now int64) error {
		recs = recs[:0]
		rows, err := claim.QueryContext(ctx, now, p.StrictOrder, p.Limit, p.Owner, now+p.Lease.Microseconds())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r outbox.Record
			var headers, lastError sql.NullString
			var created int64
			if err := rows.Scan(&r.Seq, &r.ID, &r.Topic, &r.Key, &r.Payload, &headers, &created, &r.Attempts, &lastError); err != nil {
				return err
			}
			if r.Headers, err = decodeHeaders(headers); err != nil {
				return err
			}
			r.CreatedAt = micros(created)
			r.LastError = lastError.String
			recs = append(recs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	// RETURNING yields rows in no promised order; the contract is Seq order.
	slices.SortFunc(recs, func(a, b outbox.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	return recs, nil
}

// MarkDelivered implements [outbox.Store].
func (s *Store) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	if len(p.IDs) == 0 {
		return nil
	}
	ids, err := toJSON(p.IDs)
	if err != nil {
		return err
	}
	_, err = s.execStmt(ctx, "MarkDelivered", s.q.markDone, func(now int64) []any { return []any{now, ids} })
	return err
}

// ScheduleRetry implements [outbox.Store].
func (s *Store) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	if len(p.Retries) == 0 {
		return nil
	}
	type retry struct {
		ID    string `json:"id"`
		Error string `json:"error"`
		At    int64  `json:"at"`
	}
	_, err := s.execStmt(ctx, "ScheduleRetry", s.q.retry, func(now int64) []any {
		list := make([]retry, len(p.Retries))
		for i, r := range p.Retries {
			list[i] = retry{ID: r.ID, Error: r.Error, At: now + max(r.Delay, 0).Microseconds()}
		}
		b, _ := json.Marshal(list) // strings and integers always encode
		return []any{now, string(b), p.Owner}
	})
	return err
}

// DeadLetter implements [outbox.Store].
func (s *Store) DeadLetter(ctx context.Context, p outbox.DeadLetterParams) error {
	if len(p.Letters) == 0 {
		return nil
	}
	type letter struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	list := make([]letter, len(p.Letters))
	for i, f := range p.Letters {
		list[i] = letter{ID: f.ID, Error: f.Error}
	}
	letters, err := toJSON(list)
	if err != nil {
		return err
	}
	_, err = s.execStmt(ctx, "DeadLetter", s.q.deadLetter, func(now int64) []any { return []any{now, letters, p.Owner} })
	return err
}

// Release implements [outbox.Store].
func (s *Store) Release(ctx context.Context, p outbox.ReleaseParams) error {
	if len(p.IDs) == 0 {
		return nil
	}
	ids, err := toJSON(p.IDs)
	if err != nil {
		return err
	}
	_, err = s.execStmt(ctx, "Release", s.q.release, func(now int64) []any {
		var at int64 // claimable at once
		if p.Delay > 0 {
			at = now + p.Delay.Microseconds()
		}
		return []any{now, ids, p.Owner, at}
	})
	return err
}
