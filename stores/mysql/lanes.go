package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
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
			if _, err := s.db.ExecContext(ctx, "UPDATE "+s.lanes+lanesByKey+" SET lease_until = "+until+
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

// lanesByKey makes an UPDATE of lane rows read only the rows of the lanes
// it names, by primary key (a range per lane). Left to itself, the
// optimizer reads the whole primary key of the small table, and an UPDATE
// locks every row it reads (in REPEATABLE READ until the statement ends),
// so it would wait for lanes it does not touch.
const lanesByKey = " FORCE INDEX (PRIMARY)"

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

// TakeLanes implements [outbox.Store] without a transaction, so that no
// lock outlives a statement (a relay frozen between two round trips holds
// nothing):
//
//  1. one UPDATE takes the lanes of p.Lanes that are, when it runs, at the
//     epoch given and free or expired: new owner, epoch + 1, a lease, a
//     random token of this call, and whether the previous owner let its
//     lease expire. It locks only the rows it changes: a lane held by
//     another relay, or at another epoch, is not touched;
//  2. a plain SELECT reads back the rows this call took, by the token;
//  3. when some of them came from an expired owner and p.Charge > 0, a
//     plain SELECT finds the first p.Charge due pending records of those
//     lanes, and an UPDATE by primary key, fenced by the new epochs as a
//     settle is, charges them one attempt.
func (s *Store) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if err := checkOwner("TakeLanes", p.Owner, p.Lease); err != nil {
		return nil, err
	}
	if len(p.Lanes) == 0 {
		return nil, nil
	}
	ids := make([]int64, 0, len(p.Lanes))
	for _, l := range p.Lanes {
		ids = append(ids, int64(l.ID))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	token := rand.Int64N(math.MaxInt64) + 1 // never the default 0
	in := "lane IN " + inList(ids)
	if err := s.withRetry(ctx, "take lanes", func(ctx context.Context) error {
		_, err := s.db.ExecContext(ctx, s.takeQuery(ids, p), p.Owner, token)
		return err
	}); err != nil {
		return nil, err
	}
	var taken, expired []outbox.Lane
	if err := s.withRetry(ctx, "take lanes: read back", func(ctx context.Context) error {
		taken, expired = taken[:0], expired[:0]
		rows, err := s.db.QueryContext(ctx, "SELECT lane, epoch, take_expired FROM "+s.lanes+
			" WHERE "+in+" AND take_token = ? AND owner = ? ORDER BY lane", token, p.Owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l outbox.Lane
			var wasExpired bool
			if err := rows.Scan(&l.ID, &l.Epoch, &wasExpired); err != nil {
				return err
			}
			taken = append(taken, l)
			if wasExpired {
				expired = append(expired, l)
			}
		}
		return rows.Err()
	}); err != nil {
		return nil, err
	}
	if len(expired) > 0 && p.Charge > 0 {
		if err := s.withRetry(ctx, "take lanes: charge", func(ctx context.Context) error {
			return s.charge(ctx, expired, p.Charge)
		}); err != nil {
			return nil, err
		}
	}
	return taken, nil
}

// takeQuery is the UPDATE of TakeLanes, for the sorted lane IDs of p; its
// arguments are the owner and the call's token. The row of a lane is found
// by primary key and changed only when it is at the epoch p gives and free
// or expired.
func (s *Store) takeQuery(ids []int64, p outbox.TakeParams) string {
	return "UPDATE " + s.lanes + lanesByKey + " SET owner = ?, epoch = epoch + 1, take_token = ?," +
		// lease_until is set only while a lane has an owner; it is read here
		// before it is assigned (MySQL assigns left to right, MariaDB too
		// unless SIMULTANEOUS_ASSIGNMENT, which reads the old value anyway).
		" take_expired = lease_until IS NOT NULL," +
		" lease_until = UTC_TIMESTAMP(6) + INTERVAL " + strconv.FormatInt(micros(p.Lease), 10) + " MICROSECOND" +
		" WHERE lane IN " + inList(ids) + " AND (lane, epoch) IN " + laneFence(p.Lanes) +
		" AND (owner = '' OR lease_until <= UTC_TIMESTAMP(6))"
}

// charge adds one attempt to the first n due pending records of lanes, in
// seq order. A plain read finds them (it never waits for a writer's
// uncommitted rows); the UPDATE changes them by primary key, only while
// their lane is still at the epoch given (a relay that took the lane from
// us meanwhile charges them itself).
func (s *Store) charge(ctx context.Context, lanes []outbox.Lane, n int) error {
	ids := make([]int64, len(lanes))
	for i, l := range lanes {
		ids[i] = int64(l.ID)
	}
	seqs, err := selectSeqs(ctx, s.db, "SELECT seq FROM "+s.table+" FORCE INDEX (state_order)"+
		" WHERE state = 0 AND lane IN "+inList(ids)+" AND (not_before IS NULL OR not_before <= UTC_TIMESTAMP(6))"+
		" ORDER BY seq LIMIT "+strconv.Itoa(n))
	if err != nil || len(seqs) == 0 {
		return err
	}
	_, err = s.db.ExecContext(ctx, "UPDATE "+s.table+" o FORCE INDEX (PRIMARY) STRAIGHT_JOIN "+s.lanes+" l ON l.lane = o.lane"+
		" SET o.attempts = o.attempts + 1"+
		" WHERE o.seq IN "+inList(seqs)+" AND o.state = 0 AND (l.lane, l.epoch) IN "+laneFence(lanes))
	return err
}

// ReleaseLanes implements [outbox.Store].
func (s *Store) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	if p.Owner == "" {
		return fmt.Errorf("%w: mysqlstore: ReleaseLanes needs an owner", outbox.ErrInvalidConfig)
	}
	return s.withRetry(ctx, "release lanes", func(ctx context.Context) error {
		if held := heldLanes(p.Lanes); held != "" {
			if _, err := s.db.ExecContext(ctx, "UPDATE "+s.lanes+lanesByKey+" SET owner = '', lease_until = NULL"+
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
