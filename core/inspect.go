package outbox

import (
	"context"
	"time"
)

// Inspector is implemented by stores that can find records by ID or by key,
// for operators' tools ("where is my event?"). It reads only, with indexed
// lookups; it is not on the relay's path.
type Inspector interface {
	// Inspect returns the record whose ID is p.ID, in whatever state it is
	// (pending, dead, or delivered and retained); or, with p.Key, the
	// pending and dead records of that key in Seq order, at most p.Limit
	// of them (zero means 100). Delivered records of a key are left out:
	// with retention there can be millions. An unknown ID or key returns
	// no records and a nil error.
	Inspect(ctx context.Context, p InspectParams) ([]InspectedRecord, error)
}

// InspectParams are the arguments of [Inspector.Inspect]: an ID or a key.
type InspectParams struct {
	ID    string
	Key   string
	Limit int
}

// InspectedRecord is a record with the times that tell its state.
type InspectedRecord struct {
	Record
	// DeadAt is when it was dead-lettered, zero unless it is a dead letter.
	DeadAt time.Time
	// DeliveredAt is when the broker acknowledged it, zero unless it was
	// delivered (only retained records are still found once delivered).
	DeliveredAt time.Time
}
