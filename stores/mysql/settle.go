package mysqlstore

import (
	"context"
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

// leasedTo is the fence of ScheduleRetry, DeadLetter and Release: the
// record is pending and leased to the owner in the first placeholder, and
// the lease has not expired.
const leasedTo = " AND lease_owner = ? AND state = 0 AND available_at > UTC_TIMESTAMP(6)"

// MarkDelivered implements [outbox.Store]. Whoever holds the lease, the
// records become delivered (a dead letter too: the broker has it), in one
// statement per 5,000 IDs.
func (s *Store) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	for _, c := range chunks(len(p.IDs), settleChunk) {
		list, n := idList(p.IDs[c[0]:c[1]])
		if n == 0 {
			continue
		}
		err := s.withRetry(ctx, "mark delivered", func(ctx context.Context) error {
			_, err := s.db.ExecContext(ctx, "UPDATE "+s.table+byID+
				" SET state = 2, delivered_at = UTC_TIMESTAMP(6), dead_at = NULL, lease_owner = NULL, order_key = NULL"+
				" WHERE id IN "+list+" AND state <> 2")
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ScheduleRetry implements [outbox.Store].
func (s *Store) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	for _, c := range chunks(len(p.Retries), settleChunk) {
		retries := p.Retries[c[0]:c[1]]
		ids := make([]string, len(retries))
		errs := make([]string, len(retries))
		delays := make([]string, len(retries))
		for i, r := range retries {
			ids[i], errs[i], delays[i] = r.ID, r.Error, strconv.FormatInt(micros(r.Delay), 10)
		}
		lastError, args := caseByID(ids, errs, true)
		delay, _ := caseByID(ids, delays, false)
		if lastError == "" {
			continue
		}
		list, _ := idList(ids)
		err := s.withRetry(ctx, "schedule retry", func(ctx context.Context) error {
			_, err := s.db.ExecContext(ctx, "UPDATE "+s.table+byID+
				" SET last_error = "+lastError+
				", available_at = UTC_TIMESTAMP(6) + INTERVAL "+delay+" MICROSECOND, lease_owner = NULL"+
				" WHERE id IN "+list+leasedTo, append(args, p.Owner)...)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// DeadLetter implements [outbox.Store].
func (s *Store) DeadLetter(ctx context.Context, p outbox.DeadLetterParams) error {
	for _, c := range chunks(len(p.Letters), settleChunk) {
		letters := p.Letters[c[0]:c[1]]
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
		err := s.withRetry(ctx, "dead-letter", func(ctx context.Context) error {
			_, err := s.db.ExecContext(ctx, "UPDATE "+s.table+byID+
				" SET state = 1, last_error = "+lastError+", dead_at = UTC_TIMESTAMP(6), lease_owner = NULL"+
				" WHERE id IN "+list+leasedTo, append(args, p.Owner)...)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Release implements [outbox.Store]. available_at is both the lease's
// expiry and the retry time: a release without a delay sets it to the
// epoch, one with a delay to when the records may be claimed again.
func (s *Store) Release(ctx context.Context, p outbox.ReleaseParams) error {
	availableAt := epoch
	if p.Delay > 0 {
		availableAt = "UTC_TIMESTAMP(6) + INTERVAL " + strconv.FormatInt(micros(p.Delay), 10) + " MICROSECOND"
	}
	for _, c := range chunks(len(p.IDs), settleChunk) {
		list, n := idList(p.IDs[c[0]:c[1]])
		if n == 0 {
			continue
		}
		err := s.withRetry(ctx, "release", func(ctx context.Context) error {
			_, err := s.db.ExecContext(ctx, "UPDATE "+s.table+byID+
				" SET attempts = GREATEST(attempts - 1, 0), lease_owner = NULL, available_at = "+availableAt+
				" WHERE id IN "+list+leasedTo, p.Owner)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
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
