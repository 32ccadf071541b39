package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	outbox "github.com/txoutbox/txoutbox/core"
)

// The relay's side. SQLite has one writer at a time, so the lane leases
// need no row locks: a write transaction (BEGIN IMMEDIATE) or statement
// holds the write lock from its start, and no connection of this or another
// process can interleave with it. TakeLanes reads the lanes it may take and
// takes them in one such transaction, so two relays never both take a lane
// at one epoch. Read is a plain SELECT: in WAL mode it takes no lock and
// waits for no writer.

// SyncLanes implements [outbox.Store]: one write transaction renews the
// relay and the lanes it still holds, drops the relays whose lease ran out,
// and reads the lanes and live relays.
func (s *Store) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	if p.Owner == "" || p.Lease <= 0 {
		return outbox.LaneView{}, fmt.Errorf("%w: sqlitestore: SyncLanes needs an owner and a positive lease", outbox.ErrInvalidConfig)
	}
	held, err := lanePairs(p.Held)
	if err != nil {
		return outbox.LaneView{}, err
	}
	var view outbox.LaneView
	err = s.writeTx(ctx, "SyncLanes", func(conn *sql.Conn, now int64) error {
		until := now + p.Lease.Microseconds()
		if _, err := conn.ExecContext(ctx, s.q.syncRelay, p.Owner, until); err != nil {
			return err
		}
		if len(p.Held) > 0 {
			if _, err := conn.ExecContext(ctx, s.q.syncLanes, p.Owner, until, held); err != nil {
				return err
			}
		}
		if _, err := conn.ExecContext(ctx, s.q.dropRelays, now); err != nil {
			return err
		}
		view = outbox.LaneView{Now: micros(now)}
		rows, err := conn.QueryContext(ctx, s.q.viewLanes)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l outbox.LaneState
			var until sql.NullInt64
			if err := rows.Scan(&l.ID, &l.Epoch, &l.Owner, &until); err != nil {
				return err
			}
			if until.Valid {
				l.Until = micros(until.Int64)
			}
			view.Lanes = append(view.Lanes, l)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		relays, err := conn.QueryContext(ctx, s.q.viewRelays, now)
		if err != nil {
			return err
		}
		defer relays.Close()
		for relays.Next() {
			var owner string
			if err := relays.Scan(&owner); err != nil {
				return err
			}
			view.Relays = append(view.Relays, owner)
		}
		return relays.Err()
	})
	if err != nil {
		return outbox.LaneView{}, err
	}
	return view, nil
}

// TakeLanes implements [outbox.Store]. One write transaction finds which
// of the lanes are still at the given epoch and free or expired, takes
// them, and charges an attempt to the first p.Charge pending records that
// are due (not_before unset or past: a record waiting out a retry delay was
// not in flight) of those taken from an expired owner.
func (s *Store) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if p.Owner == "" || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: sqlitestore: TakeLanes needs an owner and a positive lease", outbox.ErrInvalidConfig)
	}
	if len(p.Lanes) == 0 {
		return nil, nil
	}
	want, err := lanePairs(p.Lanes)
	if err != nil {
		return nil, err
	}
	epochs := make(map[int]int64, len(p.Lanes))
	err = s.writeTx(ctx, "TakeLanes", func(conn *sql.Conn, now int64) error {
		clear(epochs)
		var free, expired []int
		rows, err := conn.QueryContext(ctx, s.q.takeable, now, want)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var lane int
			var owner string
			if err := rows.Scan(&lane, &owner); err != nil {
				return err
			}
			free = append(free, lane)
			if owner != "" {
				expired = append(expired, lane)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		_ = rows.Close()
		if len(free) == 0 {
			return nil
		}
		lanes, err := toJSON(free)
		if err != nil {
			return err
		}
		taken, err := conn.QueryContext(ctx, s.q.take, p.Owner, now+p.Lease.Microseconds(), lanes)
		if err != nil {
			return err
		}
		defer taken.Close()
		for taken.Next() {
			var l outbox.Lane
			if err := taken.Scan(&l.ID, &l.Epoch); err != nil {
				return err
			}
			epochs[l.ID] = l.Epoch
		}
		if err := taken.Err(); err != nil {
			return err
		}
		_ = taken.Close()
		if len(expired) == 0 || p.Charge <= 0 {
			return nil
		}
		lanes, err = toJSON(expired)
		if err != nil {
			return err
		}
		_, err = conn.ExecContext(ctx, s.q.charge, lanes, p.Charge, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	// In the order asked for, each lane once.
	var out []outbox.Lane
	for _, l := range p.Lanes {
		if epoch, ok := epochs[l.ID]; ok {
			out = append(out, outbox.Lane{ID: l.ID, Epoch: epoch})
			delete(epochs, l.ID)
		}
	}
	return out, nil
}

// ReleaseLanes implements [outbox.Store]: one statement, or one write
// transaction of two with p.Leave.
func (s *Store) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	held, err := lanePairs(p.Lanes)
	if err != nil {
		return err
	}
	switch {
	case !p.Leave && len(p.Lanes) == 0:
		return nil
	case !p.Leave:
		_, err := s.execStmt(ctx, "ReleaseLanes", s.q.releaseLane, func(int64) []any { return []any{p.Owner, held} })
		return err
	}
	return s.writeTx(ctx, "ReleaseLanes", func(conn *sql.Conn, _ int64) error {
		if len(p.Lanes) > 0 {
			if _, err := conn.ExecContext(ctx, s.q.releaseLane, p.Owner, held); err != nil {
				return err
			}
		}
		_, err := conn.ExecContext(ctx, s.q.leave, p.Owner)
		return err
	})
}

// Read implements [outbox.Store] with one SELECT, which takes no lock.
func (s *Store) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("%w: sqlitestore: Read needs a positive limit", outbox.ErrInvalidConfig)
	}
	if len(p.Lanes) == 0 {
		return nil, nil
	}
	lanes, err := toJSON(p.Lanes)
	if err != nil {
		return nil, err
	}
	skip, skipIDs := "[]", "[]"
	if len(p.SkipKeys) > 0 {
		if skip, err = toJSON(p.SkipKeys); err != nil {
			return nil, err
		}
	}
	skipSeqs := "[]"
	if len(p.SkipSeqs) > 0 {
		// Seqs are in the pending index: a record whose Seq is not
		// held needs no row look-up for the test. A rowid can be given
		// again after a delete, so a held Seq is confirmed by ID (see
		// readSQL).
		if skipSeqs, err = toJSON(expandSeqs(p.SkipSeqs)); err != nil {
			return nil, err
		}
	}
	if len(p.SkipIDs) > 0 {
		if skipIDs, err = toJSON(p.SkipIDs); err != nil {
			return nil, err
		}
	}
	query := s.q.read
	if p.StrictOrder {
		query = s.q.readStrict
	}
	st, err := s.stmt(ctx, query)
	if err != nil {
		return nil, translate("Read", err)
	}
	rows, err := st.QueryContext(ctx, lanes, p.AfterSeq, skip, p.Limit, skipIDs, skipSeqs)
	if err != nil {
		return nil, translate("Read", err)
	}
	defer rows.Close()
	recs := make([]outbox.Record, 0, min(p.Limit, 1000))
	for rows.Next() {
		var r outbox.Record
		var headers, lastError sql.NullString
		var created int64
		var notBefore sql.NullInt64
		if err := rows.Scan(&r.Seq, &r.ID, &r.Topic, &r.Key, &r.Lane, &r.Payload, &headers, &created, &r.Attempts, &lastError, &notBefore); err != nil {
			return nil, translate("Read", err)
		}
		if r.Headers, err = decodeHeaders(headers); err != nil {
			return nil, err
		}
		r.CreatedAt = micros(created)
		r.LastError = lastError.String
		if notBefore.Valid {
			r.NotBefore = micros(notBefore.Int64)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, translate("Read", err)
	}
	return recs, nil
}

// Settle implements [outbox.Store]. Delivered records are one DELETE (with
// p.Retain, one UPDATE that marks them delivered), a semi-join with the
// lanes table on the epochs of p.Lanes; with failures, their UPDATEs join
// it in one write transaction.
func (s *Store) Settle(ctx context.Context, p outbox.SettleParams) error {
	if len(p.Lanes) == 0 || len(p.Delivered)+len(p.Retries)+len(p.Dead) == 0 {
		return nil // nothing to apply, or no lane it could apply to
	}
	lanes, err := lanePairs(p.Lanes)
	if err != nil {
		return err
	}
	var delivered string
	if len(p.Delivered) > 0 {
		if delivered, err = toJSON(p.Delivered); err != nil {
			return err
		}
	}
	// deliver is the statement of the deliveries and its arguments.
	deliver := func(now int64) (string, []any) {
		if p.Retain {
			return s.q.delivered, []any{now, delivered, lanes}
		}
		return s.q.deliver, []any{delivered, lanes}
	}
	if len(p.Retries) == 0 && len(p.Dead) == 0 {
		query, _ := deliver(0)
		_, err := s.execStmt(ctx, "Settle", query, func(now int64) []any { _, args := deliver(now); return args })
		return err
	}
	type failure struct {
		ID    string `json:"id"`
		Error string `json:"error"`
		Delay int64  `json:"delay"` // microseconds
	}
	var retries, dead string
	if len(p.Retries) > 0 {
		list := make([]failure, len(p.Retries))
		for i, r := range p.Retries {
			list[i] = failure{ID: r.ID, Error: r.Error, Delay: r.Delay.Microseconds()}
		}
		if retries, err = toJSON(list); err != nil {
			return err
		}
	}
	if len(p.Dead) > 0 {
		list := make([]failure, len(p.Dead))
		for i, f := range p.Dead {
			list[i] = failure{ID: f.ID, Error: f.Error}
		}
		if dead, err = toJSON(list); err != nil {
			return err
		}
	}
	return s.writeTx(ctx, "Settle", func(conn *sql.Conn, now int64) error {
		if delivered != "" {
			query, args := deliver(now)
			if _, err := conn.ExecContext(ctx, query, args...); err != nil {
				return err
			}
		}
		for _, step := range []struct{ query, list string }{
			{s.q.retry, retries}, {s.q.deadLetter, dead},
		} {
			if step.list == "" {
				continue
			}
			if _, err := conn.ExecContext(ctx, step.query, now, step.list, lanes); err != nil {
				return err
			}
		}
		return nil
	})
}

// lanePairs encodes lanes as the JSON array of [id, epoch] pairs that the
// statements join to the lanes table.
func lanePairs(lanes []outbox.Lane) (string, error) {
	pairs := make([][2]int64, len(lanes))
	for i, l := range lanes {
		pairs[i] = [2]int64{int64(l.ID), l.Epoch}
	}
	b, err := json.Marshal(pairs)
	if err != nil {
		return "", fmt.Errorf("sqlitestore: encoding lanes: %w", err)
	}
	return string(b), nil
}

// expandSeqs lists every Seq of ranges.
func expandSeqs(ranges []outbox.SeqRange) []int64 {
	var seqs []int64
	for _, r := range ranges {
		for seq := r.From; seq <= r.To; seq++ {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}
