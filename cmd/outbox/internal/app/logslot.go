package app

import (
	"fmt"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Log is the log that relays tail, as status and the console report it
// (the replication slot of PostgreSQL's log-tailing mode). Its JSON field
// names are stable.
type Log struct {
	Slot string `json:"slot"`
	// Missing is true when the slot does not exist (the other fields are
	// then zero): writers in the tailing mode fail.
	Missing bool `json:"missing"`
	// Holder is the owner of the relay streaming from the slot, empty when
	// none does.
	Holder string `json:"holder"`
	// LagBytes is the WAL written past the position the relays confirmed.
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is the walsender's flush lag, null when unknown (no
	// holder, nothing unconfirmed for a while, or a role without
	// pg_read_all_stats).
	LagSeconds *float64 `json:"lag_seconds"`
	// RetainedBytes is the WAL that PostgreSQL keeps for the slot.
	RetainedBytes int64 `json:"retained_bytes"`
	// Lost is true when PostgreSQL removed WAL the slot needed
	// (max_slot_wal_keep_size): the messages in it are gone.
	Lost bool `json:"lost"`
}

// NewLog returns the report of l, nil when l is (the outbox has no log).
func NewLog(l *outbox.LogStats) *Log {
	if l == nil {
		return nil
	}
	r := Log(*l)
	return &r
}

// LogWarning says what is wrong with the log that relays tail (the
// replication slot of PostgreSQL's log-tailing mode), or returns "" when
// nothing is: a slot missing, one that lost WAL it needed, or one that no
// relay streams from and that keeps WAL meanwhile. The sentence starts in
// lower case, for "warning: ".
func LogWarning(l outbox.LogStats) string {
	switch {
	case l.Missing:
		return fmt.Sprintf("the replication slot %s does not exist: writers in the log-tailing mode fail until `outbox migrate --tail` creates it.", l.Slot)
	case l.Lost:
		return fmt.Sprintf("PostgreSQL removed WAL that the replication slot %s still needed (max_slot_wal_keep_size): the messages in it are lost. "+
			"Drop the slot with `outbox migrate --drop-tail` and create it again with `outbox migrate --tail`.", l.Slot)
	case l.Holder == "":
		return fmt.Sprintf("no relay streams from the replication slot %s, which keeps %s of WAL, and more as the database writes: "+
			"PostgreSQL keeps it until a relay takes the slot, or gives it up past max_slot_wal_keep_size and loses the messages in it. "+
			"Start a relay with --tail, or, to leave the log-tailing mode, drop the slot with `outbox migrate --drop-tail` (messages still in it are lost).",
			l.Slot, FormatBytes(l.RetainedBytes))
	}
	return ""
}
