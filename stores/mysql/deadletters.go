package mysqlstore

import (
	"context"
	"strconv"

	outbox "github.com/txoutbox/txoutbox/core"
)

// deadChunk bounds the rows one ReplayDead or PurgeDead statement changes,
// so that replaying or purging many dead letters never holds a long
// transaction.
const deadChunk = 1000

// ListDead implements [outbox.DeadLetterStore].
func (s *Store) ListDead(ctx context.Context, p outbox.ListDeadParams) ([]outbox.DeadLetter, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	where := "state = 1 AND seq > " + strconv.FormatInt(max(0, p.AfterSeq), 10)
	if len(p.IDs) > 0 {
		list, n := idList(p.IDs)
		if n == 0 {
			return nil, nil
		}
		where += " AND id IN " + list
	}
	var out []outbox.DeadLetter
	err := s.withRetry(ctx, "list dead letters", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, "SELECT "+recordColumns("")+", dead_at FROM "+s.table+
			" WHERE "+where+" ORDER BY seq LIMIT "+strconv.Itoa(limit))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var deadAt utcTime
			r, err := scanRecord(rows, &deadAt)
			if err != nil {
				return err
			}
			out = append(out, outbox.DeadLetter{Record: r, DeadAt: deadAt.Time})
		}
		return rows.Err()
	})
	return out, err
}

// ReplayDead implements [outbox.DeadLetterStore]: the dead letters become
// pending at once, with no attempt counted and their last error kept.
func (s *Store) ReplayDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	return s.eachDead(ctx, "replay dead letters", p, func(ctx context.Context, seqs []int64) (int64, error) {
		return s.updateSeqs(ctx, seqs, "dead_at = NULL, attempts = 0, not_before = NULL", "state = 1")
	})
}

// WaitingBehindDead implements [outbox.DeadLetterBacklog]: the earliest
// selected dead letter of each key (from dead_keys), then the pending
// records of those keys after it. No index leads with the key of pending
// records (the writer would pay for it on every insert), so this reads the
// pending records once; it is an operator's question, not the relay's.
func (s *Store) WaitingBehindDead(ctx context.Context, p outbox.SelectDead) (outbox.Waiting, error) {
	var w outbox.Waiting
	where := ""
	if !p.All {
		list, n := idList(p.IDs)
		if n == 0 {
			return w, nil
		}
		where = " AND id IN " + list
	}
	err := s.withRetry(ctx, "count the records behind dead letters", func(ctx context.Context) error {
		return s.db.QueryRowContext(ctx, "SELECT COUNT(*), COUNT(DISTINCT p.msg_key) FROM"+
			" (SELECT dead_key, MIN(seq) AS seq FROM "+s.table+" WHERE dead_key IS NOT NULL"+where+" GROUP BY dead_key) d"+
			" JOIN "+s.table+" p FORCE INDEX (state_order) ON p.state = 0 AND p.msg_key = d.dead_key AND p.seq > d.seq").Scan(&w.Records, &w.Keys)
	})
	if err != nil {
		return outbox.Waiting{}, err
	}
	return w, nil
}

// PurgeDead implements [outbox.DeadLetterStore].
func (s *Store) PurgeDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	return s.eachDead(ctx, "purge dead letters", p, func(ctx context.Context, seqs []int64) (int64, error) {
		return s.deleteSeqs(ctx, seqs, "x.state = 1")
	})
}

// eachDead applies do to the selected dead letters, deadChunk at a time,
// and returns how many rows it changed.
func (s *Store) eachDead(ctx context.Context, op string, p outbox.SelectDead, do func(context.Context, []int64) (int64, error)) (int, error) {
	var wheres []string
	switch {
	case p.All:
		wheres = []string{""}
	case len(p.IDs) > 0:
		for _, c := range chunks(len(p.IDs), deadChunk) {
			if list, n := idList(p.IDs[c[0]:c[1]]); n > 0 {
				wheres = append(wheres, " AND id IN "+list)
			}
		}
	}
	total := 0
	for _, where := range wheres {
		after := int64(0)
		for {
			var seqs []int64
			var changed int64
			err := s.withRetry(ctx, op, func(ctx context.Context) error {
				var err error
				seqs, err = selectSeqs(ctx, s.db, "SELECT seq FROM "+s.table+" WHERE state = 1 AND seq > "+
					strconv.FormatInt(after, 10)+where+" ORDER BY seq LIMIT "+strconv.Itoa(deadChunk))
				if err != nil {
					return err
				}
				changed, err = do(ctx, seqs)
				return err
			})
			if err != nil {
				return total, err
			}
			total += int(changed)
			if len(seqs) < deadChunk {
				break
			}
			after = seqs[len(seqs)-1]
		}
	}
	return total, nil
}
