package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	outbox "github.com/txoutbox/txoutbox/core"
)

// maxOwnerBytes is the width of lease_owner.
const maxOwnerBytes = 255

// Claim implements [outbox.Store].
//
// It runs one short transaction: lock the outbox's claim row (claimers
// take turns, and each sees every lease committed before it), find the
// claimable records, lease them with one UPDATE by primary key, commit.
// Deadlocks and lock wait timeouts are retried a few times before they are
// reported. See claimWindow and claimBeyond for how records are found.
func (s *Store) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	if p.Owner == "" || p.Limit <= 0 || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: mysqlstore: Claim needs an owner, a positive limit and a positive lease", outbox.ErrInvalidConfig)
	}
	if len(p.Owner) > maxOwnerBytes || !utf8.ValidString(p.Owner) {
		return nil, fmt.Errorf("%w: mysqlstore: the owner %.40q... must be valid UTF-8 of at most %d bytes", outbox.ErrInvalidConfig, p.Owner, maxOwnerBytes)
	}
	var recs []outbox.Record
	err := s.withRetry(ctx, "claim", func(ctx context.Context) error {
		var err error
		recs, err = s.claim(ctx, p)
		return err
	})
	return recs, err
}

func (s *Store) claim(ctx context.Context, p outbox.ClaimParams) (_ []outbox.Record, err error) {
	// REPEATABLE READ, so that every read of the claim sees one snapshot.
	// InnoDB takes that snapshot at the first plain read, after the lock
	// below is granted: it holds every lease committed by earlier claims.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()

	// Take the claim lock, and the time from the database's clock.
	var now utcTime
	if err := tx.QueryRowContext(ctx, "SELECT UTC_TIMESTAMP(6) FROM "+s.lock+" WHERE id = 1 FOR UPDATE").Scan(&now); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("the claim lock row of %s is missing: %w", s.lock, outbox.ErrSchemaMissing)
		}
		return nil, err
	}

	recs, err := queryRecords(ctx, tx, s.claimWindow(now.Time, p.Limit, p.StrictOrder))
	if err != nil {
		return nil, err
	}
	if len(recs) < p.Limit {
		more, err := s.claimBeyond(ctx, tx, now.Time, p.Limit, p.Limit-len(recs), p.StrictOrder, recs)
		if err != nil {
			return nil, err
		}
		recs = append(recs, more...)
	}
	if len(recs) == 0 {
		return nil, tx.Rollback()
	}

	until := now.Add(p.Lease).Truncate(time.Microsecond)
	res, err := tx.ExecContext(ctx, "UPDATE "+s.table+" FORCE INDEX (PRIMARY)"+
		" SET lease_owner = ?, available_at = "+datetime(until)+", attempts = attempts + 1"+
		" WHERE seq IN "+inList(seqsOf(recs))+" AND state = 0 AND available_at <= "+datetime(now.Time), p.Owner)
	if err != nil {
		return nil, err
	}
	leased, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	if int(leased) != len(recs) {
		// Since the snapshot, another relay whose lease had expired marked
		// some of them delivered: keep the others. Their keys' order holds,
		// since a delivered predecessor is no obstacle.
		if recs, err = s.leasedOnly(ctx, tx, recs, p.Owner, until); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].Attempts++
	}
	return recs, nil
}

// A record is claimable when it is pending and available (never leased,
// released, its lease expired or its retry time come), and no earlier
// record of its key blocks it: a pending record that is not available, or
// in strict order a dead one. A claim returns claimable records in seq
// order such that, with each record, it returns every earlier pending
// record of the same key: so a key's records reach the broker in order
// whichever relay claims them.
//
// The claim looks in two places. claimWindow reads the first available
// records in seq order, a bounded window; that is enough unless most of
// them belong to blocked keys (a few keys with a long backlog, all busy).
// Then claimBeyond looks past the window one key at a time.

// window is how many available records claimWindow reads for a claim of
// limit records: 4×limit+1000, unless a test set windowSlack.
func (s *Store) window(limit int) int {
	if s.windowSlack != nil {
		return limit + *s.windowSlack
	}
	return 4*limit + 1000
}

// blockers is a derived table of the keys that are blocked, each with the
// seq of its first blocking record.
func (s *Store) blockers(now time.Time, strict bool) string {
	blocking := "k.state = 0 AND k.available_at > " + datetime(now)
	if strict {
		blocking = "(" + blocking + " OR k.state = 1)"
	}
	return "(SELECT k.msg_key, MIN(k.seq) AS first_seq FROM " + s.table + " k" +
		" WHERE " + blocking + " AND k.msg_key <> '' GROUP BY k.msg_key)"
}

// claimWindow selects up to limit claimable records among the first
// window(limit) available records, in seq order. The window is read from
// claim_order, index only, and skips leased records without counting
// them; blocked keys come from the blocked index, which holds only them in
// the range read. Delivered records are in state 2 of both indexes and are
// never read. If a record is returned, so is every earlier pending record
// of its key: they are available and unblocked too, and come first.
func (s *Store) claimWindow(now time.Time, limit int, strict bool) string {
	return "SELECT " + recordColumns("c") + " FROM " + s.table + " c JOIN (" +
		"SELECT w.seq FROM (" +
		"SELECT o.seq, o.msg_key FROM " + s.table + " o" +
		" WHERE o.state = 0 AND o.available_at <= " + datetime(now) +
		" ORDER BY o.seq LIMIT " + strconv.Itoa(s.window(limit)) +
		") w LEFT JOIN " + s.blockers(now, strict) + " b ON b.msg_key = w.msg_key" +
		" WHERE b.first_seq IS NULL OR w.seq < b.first_seq" +
		" ORDER BY w.seq LIMIT " + strconv.Itoa(limit) +
		") x ON x.seq = c.seq ORDER BY c.seq"
}

// claimBeyond finds up to want claimable records past the window of a claim
// of limit records, when the window was full. No key found here has a
// record in the window: their first pending record lies past it, so the
// window's result (found) and this one's keep every key's records in
// order. (All reads of a claim share one snapshot; keys of found are
// skipped all the same, so that this holds in any isolation level.)
//
// It finds the keys whose first pending record is past the window and not
// blocked, the earliest first (a loose index scan of key_order: one read
// per key, not per record), then reads each key's first records up to its
// first blocker, and the records without a key, and keeps the earliest.
func (s *Store) claimBeyond(ctx context.Context, tx *sql.Tx, now time.Time, limit, want int, strict bool, found []outbox.Record) ([]outbox.Record, error) {
	inWindow := make(map[string]bool, len(found))
	for _, r := range found {
		inWindow[r.Key] = true
	}
	var end int64
	err := tx.QueryRowContext(ctx, "SELECT seq FROM "+s.table+
		" WHERE state = 0 AND available_at <= "+datetime(now)+
		" ORDER BY seq LIMIT 1 OFFSET "+strconv.Itoa(s.window(limit)-1)).Scan(&end)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // the window held every available record
	}
	if err != nil {
		return nil, err
	}

	rows, err := tx.QueryContext(ctx, s.claimHeads(now, end, want, strict))
	if err != nil {
		return nil, err
	}
	var branches []string
	var args []any
	for rows.Next() {
		var key []byte
		var blockedAt sql.NullInt64
		if err := rows.Scan(&key, &blockedAt); err != nil {
			rows.Close()
			return nil, err
		}
		if inWindow[string(key)] {
			continue
		}
		before := ""
		if blockedAt.Valid {
			before = " AND seq < " + strconv.FormatInt(blockedAt.Int64, 10)
		}
		branches = append(branches, "(SELECT seq FROM "+s.table+" WHERE state = 0 AND order_key = ?"+before+
			" ORDER BY seq LIMIT "+strconv.Itoa(want)+")")
		args = append(args, key)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	branches = append(branches, "(SELECT seq FROM "+s.table+" WHERE state = 0 AND order_key = ''"+
		" AND seq > "+strconv.FormatInt(end, 10)+" AND available_at <= "+datetime(now)+
		" ORDER BY seq LIMIT "+strconv.Itoa(want)+")")
	return queryRecords(ctx, tx, "SELECT "+recordColumns("c")+" FROM "+s.table+" c JOIN ("+
		strings.Join(branches, " UNION ALL ")+
		") x ON x.seq = c.seq ORDER BY c.seq LIMIT "+strconv.Itoa(want), args...)
}

// claimHeads selects the keys whose first pending record is past end and
// not blocked, the earliest first, with the seq of their first blocker.
// The first pending record of every key comes from a loose index scan of
// key_order ("Using index for group-by").
func (s *Store) claimHeads(now time.Time, end int64, want int, strict bool) string {
	return "SELECT h.order_key, b.first_seq FROM (" +
		"SELECT state, order_key, MIN(seq) AS head FROM " + s.table +
		" WHERE state = 0 AND order_key <> '' GROUP BY state, order_key" +
		") h LEFT JOIN " + s.blockers(now, strict) + " b ON b.msg_key = h.order_key" +
		" WHERE h.head > " + strconv.FormatInt(end, 10) + " AND (b.first_seq IS NULL OR h.head < b.first_seq)" +
		" ORDER BY h.head LIMIT " + strconv.Itoa(want)
}

// queryRecords runs a query of recordColumns.
func queryRecords(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]outbox.Record, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []outbox.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// leasedOnly returns the records of recs that the claim's UPDATE leased.
func (s *Store) leasedOnly(ctx context.Context, tx *sql.Tx, recs []outbox.Record, owner string, until time.Time) ([]outbox.Record, error) {
	rows, err := tx.QueryContext(ctx, "SELECT seq FROM "+s.table+
		" WHERE seq IN "+inList(seqsOf(recs))+" AND lease_owner = ? AND available_at = "+datetime(until), owner)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	leased := make(map[int64]bool)
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		leased[seq] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	kept := recs[:0]
	for _, r := range recs {
		if leased[r.Seq] {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

func seqsOf(recs []outbox.Record) []int64 {
	seqs := make([]int64, len(recs))
	for i, r := range recs {
		seqs[i] = r.Seq
	}
	return seqs
}
