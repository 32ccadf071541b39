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

// Settle implements [outbox.Store] with one UPDATE of the outbox joined
// with the lanes table (per 5,000 outcomes), autocommitted: it applies to a
// record that is pending and whose lane row is at the epoch p.Lanes gives
// for it. The records are found through by_id, each lane row by its primary
// key. InnoDB reads the lane rows of a multi-table UPDATE with shared locks,
// held for the statement only: no TakeLanes can move a lane while the
// statement writes its records, and no lock outlives the statement, so a
// relay that freezes between two calls holds nothing.
//
// Delivered records alone take the plain statement of deliveredQuery.
// With failures, the statement sets every column with a CASE on the
// record's ID: deliveries, retries (their error and delay) and dead letters
// (their error) in the same statement.
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
		query, args, ok := s.settleQuery(outcomes[c[0]:c[1]], fence)
		if !ok {
			continue
		}
		if err := s.withRetry(ctx, "settle", func(ctx context.Context) error {
			_, err := s.db.ExecContext(ctx, query, args...)
			return err
		}); err != nil {
			return err
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

// settleQuery returns the UPDATE that writes outcomes, fenced by fence, and
// its arguments (the errors); false when none of the IDs can name a record.
// An ID listed twice keeps one outcome: delivered, else dead, else retried.
func (s *Store) settleQuery(outcomes []outcome, fence string) (string, []any, bool) {
	seen := make(map[string]bool, len(outcomes))
	var ids, deliveredIDs, deadIDs []string
	var failures []outcome
	for _, o := range outcomes {
		id := strings.ToLower(o.id)
		if !isUUID(id) || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
		switch o.kind {
		case delivered:
			deliveredIDs = append(deliveredIDs, id)
		case dead:
			deadIDs = append(deadIDs, id)
			fallthrough
		default:
			o.id = id
			failures = append(failures, o)
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
