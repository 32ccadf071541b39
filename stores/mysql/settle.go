package mysqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"unicode/utf8"

	outbox "github.com/txoutbox/txoutbox/core"
)

// settleChunk is the most records one settling statement names. A relay
// batch up to this size is settled in one round trip.
const settleChunk = 5000

// maxErrorBytes is what a TEXT column holds.
const maxErrorBytes = 65535

// byID makes an UPDATE find its rows through the unique index on id. Left
// to itself, the optimizer scans a small table instead, and in REPEATABLE
// READ such a scan waits for every row a writer inserted and has not yet
// committed: a relay would stall behind a long business transaction.
const byID = " FORCE INDEX (by_id)"

// Settle implements [outbox.Store]. Every outcome is one UPDATE of the
// outbox joined with the lanes table: it applies to a record that is
// pending and whose lane row is at the epoch p.Lanes gives for it. The
// records are found through by_id, each lane row by its primary key.
//
// Delivered records alone take one autocommitted statement (per 5,000
// IDs). With failures, everything runs in one transaction that first
// takes a shared lock on the rows of p.Lanes at their epochs, so that no
// TakeLanes can move them while the outcomes are written.
func (s *Store) Settle(ctx context.Context, p outbox.SettleParams) error {
	fence := laneFence(p.Lanes)
	if fence == "" {
		return nil // no lane held: every outcome is fenced off
	}
	if len(p.Retries) == 0 && len(p.Dead) == 0 {
		for _, c := range chunks(len(p.Delivered), settleChunk) {
			query, ok := s.deliveredQuery(p.Delivered[c[0]:c[1]], fence)
			if !ok {
				continue
			}
			if err := s.withRetry(ctx, "settle", func(ctx context.Context) error {
				_, err := s.db.ExecContext(ctx, query)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	}
	return s.withRetry(ctx, "settle", func(ctx context.Context) error { return s.settleTx(ctx, p, fence) })
}

// settleTx writes the outcomes of p in one transaction.
func (s *Store) settleTx(ctx context.Context, p outbox.SettleParams, fence string) (err error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, "SELECT lane FROM "+s.lanes+" WHERE "+heldLanes(p.Lanes)+" ORDER BY lane LOCK IN SHARE MODE"); err != nil {
		return err
	}
	exec := func(query string, args ...any) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	}
	for _, c := range chunks(len(p.Delivered), settleChunk) {
		if query, ok := s.deliveredQuery(p.Delivered[c[0]:c[1]], fence); ok {
			if err := exec(query); err != nil {
				return err
			}
		}
	}
	for _, c := range chunks(len(p.Retries), settleChunk) {
		retries := p.Retries[c[0]:c[1]]
		ids := make([]string, len(retries))
		errs := make([]string, len(retries))
		delays := make([]string, len(retries))
		for i, r := range retries {
			ids[i], errs[i], delays[i] = r.ID, r.Error, strconv.FormatInt(micros(r.Delay), 10)
		}
		lastError, args := caseByID(ids, errs, true)
		if lastError == "" {
			continue
		}
		delay, _ := caseByID(ids, delays, false)
		list, _ := idList(ids)
		if err := exec(s.settleUpdate("o.attempts = o.attempts + 1, o.last_error = "+lastError+
			", o.not_before = UTC_TIMESTAMP(6) + INTERVAL "+delay+" MICROSECOND", list, fence), args...); err != nil {
			return err
		}
	}
	for _, c := range chunks(len(p.Dead), settleChunk) {
		letters := p.Dead[c[0]:c[1]]
		ids := make([]string, len(letters))
		errs := make([]string, len(letters))
		for i, f := range letters {
			ids[i], errs[i] = f.ID, f.Error
		}
		lastError, args := caseByID(ids, errs, true)
		if lastError == "" {
			continue
		}
		list, _ := idList(ids)
		if err := exec(s.settleUpdate("o.attempts = o.attempts + 1, o.last_error = "+lastError+
			", o.dead_at = UTC_TIMESTAMP(6)", list, fence), args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// deliveredQuery returns the UPDATE that marks the records of ids
// delivered, and false when none of ids can name a record.
func (s *Store) deliveredQuery(ids []string, fence string) (string, bool) {
	list, n := idList(ids)
	if n == 0 {
		return "", false
	}
	return s.settleUpdate("o.delivered_at = UTC_TIMESTAMP(6)", list, fence), true
}

// settleUpdate is "UPDATE outbox o JOIN lanes l ... SET set" for the
// pending records of the ID list whose lane is at its epoch in fence. The
// join starts from the IDs (STRAIGHT_JOIN, by_id) and reaches each lane row
// by primary key.
func (s *Store) settleUpdate(set, idList, fence string) string {
	return "UPDATE " + s.table + " o" + byID + " STRAIGHT_JOIN " + s.lanes + " l ON l.lane = o.lane" +
		" SET " + set +
		" WHERE o.id IN " + idList + " AND o.state = 0 AND (l.lane, l.epoch) IN " + fence
}

// laneFence returns lanes as an SQL list of (lane, epoch) pairs, or "" when
// there is none. Everything in it is a number.
func laneFence(lanes []outbox.Lane) string {
	if len(lanes) == 0 {
		return ""
	}
	pairs := make([]string, len(lanes))
	for i, l := range lanes {
		pairs[i] = "(" + strconv.Itoa(l.ID) + "," + strconv.FormatInt(l.Epoch, 10) + ")"
	}
	return "(" + strings.Join(pairs, ",") + ")"
}

// caseByID returns "CASE id WHEN 'id' THEN value ... END" over the IDs that
// can be in the outbox, or "" when there is none. With placeholders the
// values are arguments (errors, sanitized to fit a TEXT column), returned
// in order; otherwise they are inlined (numbers).
func caseByID(ids, values []string, placeholders bool) (string, []any) {
	var b strings.Builder
	var args []any
	b.WriteString("CASE id")
	n := 0
	for i, id := range ids {
		id = strings.ToLower(id)
		if !isUUID(id) {
			continue
		}
		b.WriteString(" WHEN '")
		b.WriteString(id)
		b.WriteString("' THEN ")
		if placeholders {
			b.WriteByte('?')
			args = append(args, errorText(values[i]))
		} else {
			b.WriteString(values[i])
		}
		n++
	}
	if n == 0 {
		return "", nil
	}
	b.WriteString(" END")
	return b.String(), args
}

// errorText makes an error message fit a utf8mb4 TEXT column: valid UTF-8
// of at most 65,535 bytes.
func errorText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxErrorBytes {
		return s
	}
	cut := maxErrorBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
