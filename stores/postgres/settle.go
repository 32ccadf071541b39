package pgstore

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Settle records the outcomes of published records. It implements
// [outbox.Store].
//
// An outcome applies only when the record's lane row is at the epoch
// p.Lanes gives for that lane: a relay that lost the lane (another relay
// took it over, bumping its epoch) changes nothing. Each statement first
// locks those lane rows FOR KEY SHARE, so that no takeover commits between
// the epoch check and the write. Records are found through the primary key
// on id, lanes through theirs.
// Delivered records are deleted, or with p.Retain marked delivered (a new
// row version and its index entries: the delete is the cheaper write).
// Delivered records alone take one autocommitted statement; with failures,
// the delivered records and the failures (retries and dead letters
// together) take one statement each, in one transaction sent in one round
// trip.
func (s *Store) Settle(ctx context.Context, p outbox.SettleParams) error {
	lanes, epochs := laneArrays(p.Lanes)
	if len(lanes) == 0 {
		return ctx.Err() // no lane held: every outcome is fenced off
	}
	delivered := validIDs(p.Delivered)
	n := len(p.Retries) + len(p.Dead)
	ids := make([]string, 0, n)
	errs := make([]string, 0, n)
	delays := make([]int64, 0, n)
	dead := make([]bool, 0, n)
	for _, r := range p.Retries {
		if id, ok := normalizeID(r.ID); ok {
			ids, errs, delays, dead = append(ids, id), append(errs, errorText(r.Error)), append(delays, micros(r.Delay)), append(dead, false)
		}
	}
	for _, f := range p.Dead {
		if id, ok := normalizeID(f.ID); ok {
			ids, errs, delays, dead = append(ids, id), append(errs, errorText(f.Error)), append(delays, 0), append(dead, true)
		}
	}
	deliver := s.sql.deleteDelivered
	if p.Retain {
		deliver = s.sql.delivered
	}
	switch {
	case len(ids) == 0 && len(delivered) == 0:
		return ctx.Err()
	case len(ids) == 0:
		_, err := s.pool.Exec(ctx, deliver, delivered, lanes, epochs)
		return translate("settle", err)
	}
	b := &pgx.Batch{}
	if len(delivered) > 0 {
		b.Queue(deliver, delivered, lanes, epochs)
	}
	b.Queue(s.sql.failed, ids, lanes, epochs, errs, delays, dead)
	return translate("settle", s.sendTx(ctx, b))
}

// errorText makes an error message fit a text column: valid UTF-8 without
// NUL bytes.
func errorText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// validIDs keeps the IDs that are UUIDs, in canonical lowercase form. The
// others cannot be in the outbox (Enqueue accepts UUIDs only), and
// contracts say unknown IDs are ignored.
func validIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id, ok := normalizeID(id); ok {
			out = append(out, id)
		}
	}
	return out
}

func normalizeID(id string) (string, bool) {
	// A message with this ID and a topic is valid exactly when the ID is
	// a UUID in canonical text form.
	if (&outbox.Message{ID: id, Topic: "-"}).Validate(outbox.Limits{}) != nil {
		return "", false
	}
	return strings.ToLower(id), true
}
