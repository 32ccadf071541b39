package pgstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// laneTotal returns the lane count of the table: read once through the
// store's own pool (never the caller's transaction), then cached.
func (s *Store) laneTotal(ctx context.Context) (int, error) {
	if n := s.lanes.Load(); n > 0 {
		return int(n), nil
	}
	var n int64
	err := s.pool.QueryRow(ctx, s.sql.laneCount).Scan(&n)
	if err == nil && n == 0 {
		err = fmt.Errorf("the lanes table %s is empty: %w", s.names.qualLanes, outbox.ErrSchemaMissing)
	}
	if err != nil {
		if classify(err) == outbox.ErrSchemaMissing || n == 0 {
			return 0, fmt.Errorf("pgstore: reading the lane count: %w: run Store.Migrate (or `outbox migrate`) to create the outbox tables %s and %s: %w",
				outbox.ErrSchemaMissing, s.names.qualTab, s.names.qualLanes, err)
		}
		return 0, translate("read the lane count", err)
	}
	s.lanes.Store(n)
	return int(n), nil
}

// checkOwner rejects arguments the relay never sends.
func checkOwner(op, owner string, lease time.Duration) error {
	if owner == "" || lease <= 0 {
		return fmt.Errorf("%w: pgstore: %s needs an owner and a positive lease", outbox.ErrInvalidConfig, op)
	}
	if !utf8.ValidString(owner) || strings.IndexByte(owner, 0) >= 0 {
		return fmt.Errorf("%w: pgstore: %s: the owner %q must be valid UTF-8 without NUL bytes", outbox.ErrInvalidConfig, op, owner)
	}
	return nil
}

// sendTx sends b as one explicit READ COMMITTED transaction, in one round
// trip: BEGIN, the statements of b, COMMIT. READ COMMITTED whatever the
// session's default, so that a statement that finds a row another
// transaction changed meanwhile checks it again (instead of failing, as in
// REPEATABLE READ). When a statement fails the server skips the rest; the
// pool then drops the connection, left in the failed transaction.
//
// The transaction's statements are bounded on the server by the time left
// to ctx (statement_timeout and lock_timeout, local to the transaction;
// txTimeout without a deadline): a relay frozen mid-round trip (SIGSTOP,
// a VM pause) while the server still sends it results cannot keep lane
// rows locked longer than that, and a take that waits on a lane held by
// such a relay gives up in the same time.
func (s *Store) sendTx(ctx context.Context, b *pgx.Batch) error {
	timeout := txTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	ms := strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	tx := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+3)}
	tx.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	tx.Queue("SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true)", ms)
	tx.QueuedQueries = append(tx.QueuedQueries, b.QueuedQueries...)
	tx.Queue("COMMIT")
	return s.pool.SendBatch(ctx, tx).Close()
}

// txTimeout bounds the relay-side transactions of a call without a
// deadline.
const txTimeout = 10 * time.Second

// laneArrays turns lanes into the arguments $2 and $3 of the statements
// that name lanes at their epochs (see heldLanes): the lane IDs, and their
// epochs by lane, -1 (no epoch) for the lanes not named. A lane named twice
// counts at its last epoch.
func laneArrays(lanes []outbox.Lane) ([]int32, []int64) {
	ids := make([]int32, 0, len(lanes))
	top := -1
	for _, l := range lanes {
		if l.ID >= 0 && l.ID < outbox.MaxLanes && l.Epoch >= 0 {
			ids = append(ids, int32(l.ID))
			top = max(top, l.ID)
		}
	}
	epochs := make([]int64, top+1)
	for i := range epochs {
		epochs[i] = -1
	}
	for _, l := range lanes {
		if l.ID >= 0 && l.ID < outbox.MaxLanes && l.Epoch >= 0 {
			epochs[l.ID] = l.Epoch
		}
	}
	return ids, epochs
}

// SyncLanes is the relay's heartbeat. It implements [outbox.Store]: in one
// round trip and one transaction (so with one now()),
// it records p.Owner as live until now+p.Lease, extends the leases of the
// lanes of p.Held that p.Owner still holds at their epoch, forgets relays
// whose lease ran out, and reads every lane and live relay.
func (s *Store) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	if err := checkOwner("SyncLanes", p.Owner, p.Lease); err != nil {
		return outbox.LaneView{}, err
	}
	ids, epochs := laneArrays(p.Held)
	lease := micros(p.Lease)
	b := &pgx.Batch{}
	b.Queue(s.sql.relayUpsert, p.Owner, lease)
	if len(ids) > 0 {
		b.Queue(s.sql.renewLanes, p.Owner, ids, epochs, lease)
	}
	b.Queue(s.sql.relaysExpire)
	var view outbox.LaneView
	b.Queue(s.sql.laneView).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var l outbox.LaneState
			var until *time.Time
			if err := rows.Scan(&l.ID, &l.Owner, &l.Epoch, &until, &view.Now); err != nil {
				return err
			}
			if until != nil {
				l.Until = until.UTC()
			}
			view.Lanes = append(view.Lanes, l)
		}
		return rows.Err()
	})
	b.Queue(s.sql.liveRelays).Query(func(rows pgx.Rows) error {
		var err error
		view.Relays, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err := s.sendTx(ctx, b); err != nil {
		return outbox.LaneView{}, translate("sync lanes", err)
	}
	if len(view.Lanes) == 0 {
		return outbox.LaneView{}, fmt.Errorf("pgstore: sync lanes: the lanes table %s is empty; run Store.Migrate (or `outbox migrate`): %w",
			s.names.qualLanes, outbox.ErrSchemaMissing)
	}
	view.Now = view.Now.UTC()
	return view, nil
}

// TakeLanes implements [outbox.Store] with one statement, in a transaction
// with the plan guard of Read (one round trip): it locks the rows of the lanes
// still at the epochs given and free or expired, in lane order, gives them
// to p.Owner with their epochs bumped, and charges one attempt to the
// first p.Charge pending records that are due (not waiting out a retry
// delay) of those whose owner let its lease expire.
func (s *Store) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if err := checkOwner("TakeLanes", p.Owner, p.Lease); err != nil {
		return nil, err
	}
	ids, epochs := laneArrays(p.Lanes)
	if len(ids) == 0 {
		return nil, ctx.Err()
	}
	b := &pgx.Batch{}
	b.Queue(s.sql.planGuard)
	var taken []outbox.Lane
	b.Queue(s.sql.takeLanes, p.Owner, ids, epochs, micros(p.Lease), max(p.Charge, 0)).Query(func(rows pgx.Rows) error {
		var err error
		taken, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Lane, error) {
			var l outbox.Lane
			err := row.Scan(&l.ID, &l.Epoch)
			return l, err
		})
		return err
	})
	if err := s.sendTx(ctx, b); err != nil {
		return nil, translate("take lanes", err)
	}
	slices.SortFunc(taken, func(a, b outbox.Lane) int { return cmp.Compare(a.ID, b.ID) })
	return taken, nil
}

// ReleaseLanes implements [outbox.Store]: it frees the lanes of p.Lanes
// that p.Owner holds at their epoch and, with p.Leave, forgets p.Owner as a
// relay, in one round trip and one transaction.
func (s *Store) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	if p.Owner == "" {
		return fmt.Errorf("%w: pgstore: ReleaseLanes needs an owner", outbox.ErrInvalidConfig)
	}
	ids, epochs := laneArrays(p.Lanes)
	b := &pgx.Batch{}
	if len(ids) > 0 {
		b.Queue(s.sql.releaseLanes, p.Owner, ids, epochs)
	}
	if p.Leave {
		b.Queue(s.sql.leave, p.Owner)
	}
	if b.Len() == 0 {
		return ctx.Err()
	}
	return translate("release lanes", s.sendTx(ctx, b))
}
