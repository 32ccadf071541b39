package mysqlstore

import (
	"context"
	"strconv"
	"strings"
	"time"
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

// Settle implements [outbox.Store] with statements of the outbox joined
// with the lanes table (per 5,000 outcomes), each autocommitted on its own:
// they apply to a record that is pending and whose lane row is at the epoch
// p.Lanes gives for it. The records are found through by_id, each lane row
// by its primary key. InnoDB reads the lane rows of a multi-table UPDATE or
// DELETE with shared locks, held for the statement only: no TakeLanes can
// move a lane while the statement writes its records, and no lock outlives
// the statement, so a relay that freezes between two calls holds nothing.
//
// Delivered records are deleted by one DELETE (deleteQuery), or, with
// p.Retain, marked delivered by the plain UPDATE of deliveredQuery. With
// failures, one UPDATE sets every column with a CASE on the record's ID:
// retries (their error and delay) and dead letters (their error), and with
// p.Retain the deliveries too, in the same statement; without it the
// DELETE of the deliveries and the UPDATE of the failures are two
// independent statements (each fenced on its own, so their order does not
// matter).
func (s *Store) Settle(ctx context.Context, p outbox.SettleParams) error {
	fence := laneFence(p.Lanes)
	if fence == "" {
		return nil // no lane held: every outcome is fenced off
	}
	outcomes := make([]outcome, 0, len(p.Delivered)+len(p.Retries)+len(p.Dead))
	for _, id := range p.Delivered {
		outcomes = append(outcomes, outcome{id: id, kind: delivered})
	}
	for _, f := range p.Dead {
		outcomes = append(outcomes, outcome{id: f.ID, kind: dead, err: f.Error})
	}
	for _, r := range p.Retries {
		outcomes = append(outcomes, outcome{id: r.ID, kind: retried, err: r.Error, delay: r.Delay})
	}
	for _, c := range chunks(len(outcomes), settleChunk) {
		for _, st := range s.settleStatements(outcomes[c[0]:c[1]], fence, p.Retain) {
			if err := s.withRetry(ctx, "settle", func(ctx context.Context) error {
				_, err := s.db.ExecContext(ctx, st.query, st.args...)
				return err
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// An outcome of Settle for one record.
type outcome struct {
	id    string
	kind  outcomeKind
	err   string
	delay time.Duration
}

type outcomeKind int

const (
	delivered outcomeKind = iota
	retried
	dead
)

// statement is one SQL statement and its arguments.
type statement struct {
	query string
	args  []any
}

// settleStatements returns the statements that write outcomes, fenced by
// fence: with retain, the single UPDATE of settleQuery; without, the DELETE
// of the deliveries and the UPDATE of the failures, those of them there
// are. None when none of the IDs can name a record. An ID listed twice
// keeps one outcome: delivered, else dead, else retried.
func (s *Store) settleStatements(outcomes []outcome, fence string, retain bool) []statement {
	if retain {
		query, args, ok := s.settleQuery(outcomes, fence)
		if !ok {
			return nil
		}
		return []statement{{query, args}}
	}
	deliveredIDs, failures := splitOutcomes(outcomes)
	var sts []statement
	if len(deliveredIDs) > 0 {
		query, _ := s.deleteQuery(deliveredIDs, fence)
		sts = append(sts, statement{query: query})
	}
	if len(failures) > 0 {
		query, args, _ := s.settleQuery(failures, fence)
		sts = append(sts, statement{query, args})
	}
	return sts
}

// splitOutcomes returns the valid, lower-cased IDs of the deliveries and
// the failures (with their IDs lower-cased) of outcomes. An ID listed twice
// keeps its first outcome (Settle lists deliveries, then dead letters, then
// retries).
func splitOutcomes(outcomes []outcome) (deliveredIDs []string, failures []outcome) {
	seen := make(map[string]bool, len(outcomes))
	for _, o := range outcomes {
		id := strings.ToLower(o.id)
		if !isUUID(id) || seen[id] {
			continue
		}
		seen[id] = true
		if o.kind == delivered {
			deliveredIDs = append(deliveredIDs, id)
			continue
		}
		o.id = id
		failures = append(failures, o)
	}
	return deliveredIDs, failures
}

// settleQuery returns the UPDATE that writes outcomes, fenced by fence, and
// its arguments (the errors); false when none of the IDs can name a record.
// An ID listed twice keeps one outcome: delivered, else dead, else retried.
func (s *Store) settleQuery(outcomes []outcome, fence string) (string, []any, bool) {
	deliveredIDs, failures := splitOutcomes(outcomes)
	var ids, deadIDs []string
	ids = append(ids, deliveredIDs...)
	for _, f := range failures {
		ids = append(ids, f.id)
		if f.kind == dead {
			deadIDs = append(deadIDs, f.id)
		}
	}
	if len(ids) == 0 {
		return "", nil, false
	}
	list, _ := idList(ids)
	if len(failures) == 0 {
		return s.settleUpdate("o.delivered_at = UTC_TIMESTAMP(6)", list, fence), nil, true
	}
	// Every column is set from the record's original values and its ID
	// only, so the order in which the server assigns them does not matter.
	var set strings.Builder
	var args []any
	set.WriteString("o.attempts = o.attempts + 1")
	if len(deliveredIDs) > 0 {
		d, _ := idList(deliveredIDs)
		set.WriteString(" - (o.id IN " + d + ")") // a delivery costs no attempt
		set.WriteString(", o.delivered_at = IF(o.id IN " + d + ", UTC_TIMESTAMP(6), NULL)")
	}
	set.WriteString(", o.last_error = CASE o.id")
	for _, f := range failures {
		set.WriteString(" WHEN '" + f.id + "' THEN ?")
		args = append(args, errorText(f.err))
	}
	set.WriteString(" ELSE o.last_error END")
	var retryDelays strings.Builder
	for _, f := range failures {
		if f.kind == retried {
			retryDelays.WriteString(" WHEN '" + f.id + "' THEN UTC_TIMESTAMP(6) + INTERVAL " + strconv.FormatInt(micros(f.delay), 10) + " MICROSECOND")
		}
	}
	if retryDelays.Len() > 0 {
		set.WriteString(", o.not_before = CASE o.id" + retryDelays.String() + " ELSE o.not_before END")
	}
	if len(deadIDs) > 0 {
		d, _ := idList(deadIDs)
		set.WriteString(", o.dead_at = IF(o.id IN " + d + ", UTC_TIMESTAMP(6), NULL)")
	}
	return s.settleUpdate(set.String(), list, fence), args, true
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

// deleteQuery returns the DELETE of the delivered records of ids, and false
// when none of ids can name a record. Like settleUpdate, it starts from the
// IDs (STRAIGHT_JOIN, by_id), reaches each lane row by primary key, and
// deletes only pending records of lanes at their epoch in fence.
func (s *Store) deleteQuery(ids []string, fence string) (string, bool) {
	list, n := idList(ids)
	if n == 0 {
		return "", false
	}
	return "DELETE o FROM " + s.table + " o" + byID + " STRAIGHT_JOIN " + s.lanes + " l ON l.lane = o.lane" +
		" WHERE o.id IN " + list + " AND o.state = 0 AND (l.lane, l.epoch) IN " + fence, true
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
