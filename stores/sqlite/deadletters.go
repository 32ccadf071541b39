package sqlitestore

import (
	"context"
	"database/sql"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ListDead implements [outbox.DeadLetterStore].
func (s *Store) ListDead(ctx context.Context, p outbox.ListDeadParams) ([]outbox.DeadLetter, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	var rows *sql.Rows
	var err error
	if len(p.IDs) > 0 {
		ids, jerr := toJSON(p.IDs)
		if jerr != nil {
			return nil, jerr
		}
		rows, err = s.db.QueryContext(ctx, s.q.listDeadIDs, p.AfterSeq, limit, ids)
	} else {
		rows, err = s.db.QueryContext(ctx, s.q.listDead, p.AfterSeq, limit)
	}
	if err != nil {
		return nil, translate("ListDead", err)
	}
	defer rows.Close()
	var out []outbox.DeadLetter
	for rows.Next() {
		var d outbox.DeadLetter
		var headers, lastError sql.NullString
		var created, deadAt int64
		var notBefore sql.NullInt64
		if err := rows.Scan(&d.Seq, &d.ID, &d.Topic, &d.Key, &d.Lane, &d.Payload, &headers, &created, &d.Attempts, &lastError, &notBefore, &deadAt); err != nil {
			return nil, translate("ListDead", err)
		}
		if d.Headers, err = decodeHeaders(headers); err != nil {
			return nil, err
		}
		d.CreatedAt = micros(created)
		d.LastError = lastError.String
		d.DeadAt = micros(deadAt)
		if notBefore.Valid {
			d.NotBefore = micros(notBefore.Int64)
		}
		out = append(out, d)
	}
	return out, translate("ListDead", rows.Err())
}

// ReplayDead implements [outbox.DeadLetterStore]. Replayed records keep
// their last error and start again at zero attempts, due at once.
func (s *Store) ReplayDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	return s.changeDead(ctx, "ReplayDead", p, s.q.replayAll, s.q.replayDead)
}

// WaitingBehindDead implements [outbox.DeadLetterBacklog]. It reads the
// pending records of the dead letters' keys, so its cost grows with the
// backlog.
func (s *Store) WaitingBehindDead(ctx context.Context, p outbox.SelectDead) (outbox.Waiting, error) {
	var w outbox.Waiting
	if !p.All && len(p.IDs) == 0 {
		return w, nil
	}
	query, args := s.q.waitingAll, []any(nil)
	if !p.All {
		ids, err := toJSON(p.IDs)
		if err != nil {
			return w, err
		}
		query, args = s.q.waitingIDs, []any{ids}
	}
	if err := s.db.QueryRowContext(ctx, query, args...).Scan(&w.Records, &w.Keys); err != nil {
		return outbox.Waiting{}, translate("WaitingBehindDead", err)
	}
	return w, nil
}

// PurgeDead implements [outbox.DeadLetterStore].
func (s *Store) PurgeDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	return s.changeDead(ctx, "PurgeDead", p, s.q.purgeAll, s.q.purgeDead)
}

func (s *Store) changeDead(ctx context.Context, what string, p outbox.SelectDead, all, byID string) (int, error) {
	if !p.All && len(p.IDs) == 0 {
		return 0, nil
	}
	query, args := all, []any(nil)
	if !p.All {
		ids, err := toJSON(p.IDs)
		if err != nil {
			return 0, err
		}
		query, args = byID, []any{ids}
	}
	n, err := s.execStmt(ctx, what, query, func(int64) []any { return args })
	return int(n), err
}
