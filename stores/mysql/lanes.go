package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	outbox "github.com/txoutbox/txoutbox/core"
)

// maxOwnerBytes is the width of the owner columns.
const maxOwnerBytes = 255

// checkOwner rejects what the owner columns cannot hold.
func checkOwner(op, owner string, lease time.Duration) error {
	if owner == "" || lease <= 0 {
		return fmt.Errorf("%w: mysqlstore: %s needs an owner and a positive lease", outbox.ErrInvalidConfig, op)
	}
	if len(owner) > maxOwnerBytes || !utf8.ValidString(owner) {
		return fmt.Errorf("%w: mysqlstore: the owner %.40q... must be valid UTF-8 of at most %d bytes", outbox.ErrInvalidConfig, owner, maxOwnerBytes)
	}
	return nil
}

// laneTotal returns the lane count of the outbox, read once from the lanes
// table through the store's own pool (never the caller's transaction) and
// cached.
func (s *Store) laneTotal(ctx context.Context) (int, error) {
	if n := s.laneCount.Load(); n > 0 {
		return int(n), nil
	}
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.lanes).Scan(&n)
	if isSchemaMissing(err) {
		return 0, fmt.Errorf("mysqlstore: the lanes table %s is missing; run Store.Migrate (or `outbox migrate`) first: %w: %w", s.lanes, outbox.ErrSchemaMissing, err)
	}
	if err != nil {
		return 0, translate("read the lane count", err)
	}
	if n == 0 {
		return 0, fmt.Errorf("mysqlstore: the lanes table %s is empty; run Store.Migrate (or `outbox migrate`) to create the lanes: %w", s.lanes, outbox.ErrSchemaMissing)
	}
	s.laneCount.Store(int64(n))
	return n, nil
}

// dbNow reads the database's clock.
func dbNow(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (time.Time, error) {
	var now utcTime
	if err := q.QueryRowContext(ctx, "SELECT UTC_TIMESTAMP(6)").Scan(&now); err != nil {
		return time.Time{}, err
	}
	return now.Time, nil
}

// SyncLanes implements [outbox.Store] with a few single statements on the
// lanes and relays tables (autocommitted, so that heartbeats of several
// relays never wait for one another's transactions).
func (s *Store) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	if err := checkOwner("SyncLanes", p.Owner, p.Lease); err != nil {
		return outbox.LaneView{}, err
	}
	var view outbox.LaneView
	err := s.withRetry(ctx, "sync lanes", func(ctx context.Context) error {
		now, err := dbNow(ctx, s.db)
		if err != nil {
			return err
		}
		until := datetime(now.Add(p.Lease))
		if _, err := s.db.ExecContext(ctx, "INSERT INTO "+s.relays+" (owner, lease_until) VALUES (?, "+until+")"+
			" ON DUPLICATE KEY UPDATE lease_until = "+until, p.Owner); err != nil {
			return err
		}
		if held := heldLanes(p.Held); held != "" {
			if _, err := s.db.ExecContext(ctx, "UPDATE "+s.lanes+" SET lease_until = "+until+
				" WHERE "+held+" AND owner = ?", p.Owner); err != nil {
				return err
			}
		}
		if _, err := s.db.ExecContext(ctx, "DELETE FROM "+s.relays+" WHERE lease_until <= "+datetime(now)); err != nil {
			return err
		}
		lanes, err := s.readLanes(ctx)
		if err != nil {
			return err
		}
		rows, err := s.db.QueryContext(ctx, "SELECT owner FROM "+s.relays+" WHERE lease_until > "+datetime(now)+" ORDER BY owner")
		if err != nil {
			return err
		}
		defer rows.Close()
		var relays []string
		for rows.Next() {
			var owner []byte
			if err := rows.Scan(&owner); err != nil {
				return err
			}
			relays = append(relays, string(owner))
		}
		if err := rows.Err(); err != nil {
			return err
		}
		view = outbox.LaneView{Now: now, Lanes: lanes, Relays: relays}
		return nil
	})
	return view, err
}

// readLanes returns every lane, by ID.
func (s *Store) readLanes(ctx context.Context) ([]outbox.LaneState, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT lane, owner, epoch, lease_until FROM "+s.lanes+" ORDER BY lane")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lanes []outbox.LaneState
	for rows.Next() {
		var l outbox.LaneState
		var owner []byte
		var until utcTime
		if err := rows.Scan(&l.ID, &owner, &l.Epoch, &until); err != nil {
			return nil, err
		}
		l.Owner, l.Until = string(owner), until.Time
		lanes = append(lanes, l)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(lanes) == 0 {
		return nil, fmt.Errorf("the lanes table %s is empty; run Store.Migrate (or `outbox migrate`) to create the lanes: %w", s.lanes, outbox.ErrSchemaMissing)
	}
	return lanes, nil
}

// heldLanes returns a condition on the lanes table that holds for the rows
// of lanes at their epochs, found by primary key; "" when lanes is empty.
// Everything in it is a number.
func heldLanes(lanes []outbox.Lane) string {
	if len(lanes) == 0 {
		return ""
	}
	ids := make([]string, len(lanes))
	pairs := make([]string, len(lanes))
	for i, l := range lanes {
		id := strconv.Itoa(l.ID)
		ids[i] = id
		pairs[i] = "(" + id + "," + strconv.FormatInt(l.Epoch, 10) + ")"
	}
	return "lane IN (" + strings.Join(ids, ",") + ") AND (lane, epoch) IN (" + strings.Join(pairs, ",") + ")"
}

// TakeLanes implements [outbox.Store] in one transaction: lock the rows of
// the lanes asked for (SELECT ... FOR UPDATE, by primary key, in lane
// order), take those still at the epoch given and free or expired, and
// charge one attempt to the first p.Charge pending records of the lanes
// whose owner let its lease expire.
func (s *Store) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if err := checkOwner("TakeLanes", p.Owner, p.Lease); err != nil {
		return nil, err
	}
	if len(p.Lanes) == 0 {
		return nil, nil
	}
	var taken []outbox.Lane
	err := s.withRetry(ctx, "take lanes", func(ctx context.Context) error {
		var err error
		taken, err = s.takeLanes(ctx, p)
		return err
	})
	return taken, err
}

func (s *Store) takeLanes(ctx context.Context, p outbox.TakeParams) (_ []outbox.Lane, err error) {
	want := make(map[int]int64, len(p.Lanes))
	ids := make([]int64, 0, len(p.Lanes))
	for _, l := range p.Lanes {
		if _, dup := want[l.ID]; !dup {
			ids = append(ids, int64(l.ID))
		}
		want[l.ID] = l.Epoch
	}
	slices.Sort(ids)

	// READ COMMITTED: the locking read takes record locks only, and the
	// charge's plain read sees every settle committed before it.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	rows, err := tx.QueryContext(ctx, "SELECT lane, owner, epoch, lease_until, UTC_TIMESTAMP(6) FROM "+s.lanes+
		" WHERE lane IN "+inList(ids)+" ORDER BY lane FOR UPDATE")
	if err != nil {
		return nil, err
	}
	var now time.Time
	var taken []outbox.Lane
	var expired []int64
	for rows.Next() {
		var id int
		var owner []byte
		var epoch int64
		var until, at utcTime
		if err := rows.Scan(&id, &owner, &epoch, &until, &at); err != nil {
			rows.Close()
			return nil, err
		}
		now = at.Time
		if epoch != want[id] || (len(owner) > 0 && until.Valid && until.Time.After(now)) {
			continue // changed since the caller's view, or held
		}
		if len(owner) > 0 {
			expired = append(expired, int64(id))
		}
		taken = append(taken, outbox.Lane{ID: id, Epoch: epoch + 1})
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, err
	}
	rows.Close()
	if len(taken) == 0 {
		return nil, tx.Rollback()
	}
	takenIDs := make([]int64, len(taken))
	for i, l := range taken {
		takenIDs[i] = int64(l.ID)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE "+s.lanes+" SET owner = ?, epoch = epoch + 1, lease_until = "+datetime(now.Add(p.Lease))+
		" WHERE lane IN "+inList(takenIDs), p.Owner); err != nil {
		return nil, err
	}
	if len(expired) > 0 && p.Charge > 0 {
		// A plain read finds the records (it never waits for a writer's
		// uncommitted rows), the UPDATE charges them by primary key.
		seqs, err := selectSeqs(ctx, tx, "SELECT seq FROM "+s.table+" FORCE INDEX (state_order)"+
			" WHERE state = 0 AND lane IN "+inList(expired)+" ORDER BY seq LIMIT "+strconv.Itoa(p.Charge))
		if err != nil {
			return nil, err
		}
		if len(seqs) > 0 {
			if _, err := tx.ExecContext(ctx, "UPDATE "+s.table+" FORCE INDEX (PRIMARY) SET attempts = attempts + 1"+
				" WHERE seq IN "+inList(seqs)+" AND state = 0"); err != nil {
				return nil, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return taken, nil
}

// ReleaseLanes implements [outbox.Store].
func (s *Store) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	if p.Owner == "" {
		return fmt.Errorf("%w: mysqlstore: ReleaseLanes needs an owner", outbox.ErrInvalidConfig)
	}
	return s.withRetry(ctx, "release lanes", func(ctx context.Context) error {
		if held := heldLanes(p.Lanes); held != "" {
			if _, err := s.db.ExecContext(ctx, "UPDATE "+s.lanes+" SET owner = '', lease_until = NULL"+
				" WHERE "+held+" AND owner = ?", p.Owner); err != nil {
				return err
			}
		}
		if p.Leave {
			if _, err := s.db.ExecContext(ctx, "DELETE FROM "+s.relays+" WHERE owner = ?", p.Owner); err != nil {
				return err
			}
		}
		return nil
	})
}
