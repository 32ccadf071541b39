package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ListDead returns dead letters in Seq order (the order they were written),
// after p.AfterSeq, at most p.Limit (zero means 100), only those of p.IDs
// when it is set. It implements [outbox.DeadLetterStore].
func (s *Store) ListDead(ctx context.Context, p outbox.ListDeadParams) ([]outbox.DeadLetter, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	var ids []string // nil: all of them
	if len(p.IDs) > 0 {
		ids = validIDs(p.IDs)
		if len(ids) == 0 {
			return nil, ctx.Err()
		}
	}
	rows, err := s.pool.Query(ctx, s.sql.listDead, p.AfterSeq, ids, limit)
	if err != nil {
		return nil, translate("list dead letters", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.DeadLetter, error) {
		var d outbox.DeadLetter
		var err error
		d.Record, err = scanRecord(row, &d.DeadAt)
		d.DeadAt = d.DeadAt.UTC()
		return d, err
	})
	if err != nil {
		return nil, translate("list dead letters", err)
	}
	return list, nil
}

// ReplayDead makes the selected dead letters deliverable again with their
// attempt count reset, wakes listening relays, and returns how many it
// replayed. It implements [outbox.DeadLetterStore].
func (s *Store) ReplayDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	ids := validIDs(p.IDs)
	if !p.All && len(ids) == 0 {
		return 0, ctx.Err()
	}
	b := &pgx.Batch{}
	var n int64
	b.Queue(s.sql.replayDead, p.All, ids).Exec(func(tag pgconn.CommandTag) error {
		n = tag.RowsAffected()
		return nil
	})
	if !s.cfg.DisableNotify {
		b.Queue(s.sql.notify, s.names.channel)
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, translate("replay dead letters", err)
	}
	return int(n), nil
}

// WaitingBehindDead counts the pending records that a replay of the
// selected dead letters would hold back: those of their keys written after
// them. It implements [outbox.DeadLetterBacklog].
func (s *Store) WaitingBehindDead(ctx context.Context, p outbox.SelectDead) (outbox.Waiting, error) {
	var w outbox.Waiting
	ids := validIDs(p.IDs)
	if !p.All && len(ids) == 0 {
		return w, ctx.Err()
	}
	err := s.pool.QueryRow(ctx, s.sql.waitingBehindDead, p.All, ids).Scan(&w.Records, &w.Keys)
	if err != nil {
		return outbox.Waiting{}, translate("count the records behind dead letters", err)
	}
	return w, nil
}

// PurgeDead deletes the selected dead letters and returns how many it
// deleted. It implements [outbox.DeadLetterStore].
func (s *Store) PurgeDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	ids := validIDs(p.IDs)
	if !p.All && len(ids) == 0 {
		return 0, ctx.Err()
	}
	tag, err := s.pool.Exec(ctx, s.sql.purgeDead, p.All, ids)
	if err != nil {
		return 0, translate("purge dead letters", err)
	}
	return int(tag.RowsAffected()), nil
}
