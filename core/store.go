package outbox

import (
	"context"
	"time"
)

// Record is a message as the outbox holds it.
type Record struct {
	Message
	// Seq is the store's position of the record. Within one key it
	// increases in write order; across keys it means nothing to callers.
	Seq int64
	// Attempts counts the claims of this record, including the current one.
	// A claim counts as an attempt even when the relay dies before it
	// reports an outcome, so a message that crashes relays is dead-lettered
	// after [RelayConfig.MaxAttempts] claims instead of looping forever.
	Attempts int
	// LastError is the error of the last failed attempt, if any.
	LastError string
}

// Store is the relay's view of an outbox. Writing is not part of it: each
// store adapter has its own Enqueue method, because it takes that
// database's transaction type.
//
// A record is deliverable when it is not delivered, not dead, not leased
// (or its lease has expired) and the delay of its last retry or release
// has passed. Claim hands out only deliverable records whose earlier
// records of the same key are each delivered, dead (unless
// [ClaimParams.StrictOrder]), or deliverable and handed out earlier in the
// same result. That rule, applied atomically
// across concurrent claimers, is what keeps per-key order with any number
// of relays (a plain FOR UPDATE SKIP LOCKED over each key's oldest record
// does not: one claimer skips the record another holds and takes its
// successor). Records with an empty key are ordered by nothing.
//
// Every method may be called concurrently. Owner identifies one relay
// instance; methods other than Claim and MarkDelivered act only on records
// leased to that owner, so a relay whose lease expired cannot undo the work
// of the relay that took the record over.
type Store interface {
	// Claim leases up to p.Limit deliverable records to p.Owner for
	// p.Lease and counts one attempt for each. It fills the batch when that
	// many records are claimable, oldest first. The result is in
	// publication order: records of the same key appear in ascending Seq.
	// An empty result and a nil error mean there is nothing to do now.
	Claim(ctx context.Context, p ClaimParams) ([]Record, error)

	// MarkDelivered records that the broker has acknowledged the records.
	// It applies whoever holds the lease (the broker has the message
	// either way), ignores IDs already delivered, and ends the lease.
	MarkDelivered(ctx context.Context, p MarkDeliveredParams) error

	// ScheduleRetry makes leased records deliverable again after their
	// delay, keeping the error. While a record waits, later records of its
	// key are not claimable.
	ScheduleRetry(ctx context.Context, p ScheduleRetryParams) error

	// DeadLetter moves leased records to the dead letters with their error.
	// They are not claimable until replayed ([DeadLetterStore]).
	DeadLetter(ctx context.Context, p DeadLetterParams) error

	// Release returns leased records that were never handed to the broker,
	// or that the broker could not take for reasons of their topic,
	// undoing the attempt their claim counted. They are deliverable again
	// after p.Delay (at once when it is zero), and while a record waits,
	// later records of its key are not claimable, as for ScheduleRetry.
	// The relay uses it on shutdown, for records held back behind a failed
	// record of their key, and with a delay for records of a topic the
	// broker cannot take now ([ErrTopicUnavailable]).
	Release(ctx context.Context, p ReleaseParams) error
}

// ClaimParams are the arguments of [Store.Claim].
type ClaimParams struct {
	// Owner identifies the relay instance taking the lease. Required.
	Owner string
	// Limit is the most records to return. Positive.
	Limit int
	// Lease is how long the records stay reserved for Owner. Positive.
	Lease time.Duration
	// StrictOrder makes a dead-lettered record hold back the later records
	// of its key until it is replayed or purged. By default they continue.
	StrictOrder bool
}

// MarkDeliveredParams are the arguments of [Store.MarkDelivered].
type MarkDeliveredParams struct {
	Owner string
	IDs   []string
}

// ScheduleRetryParams are the arguments of [Store.ScheduleRetry].
type ScheduleRetryParams struct {
	Owner   string
	Retries []Retry
}

// Retry is one record to try again.
type Retry struct {
	ID string
	// Error is the failure, kept as the record's LastError.
	Error string
	// Delay is measured from the store's clock at the time of the call.
	Delay time.Duration
}

// DeadLetterParams are the arguments of [Store.DeadLetter].
type DeadLetterParams struct {
	Owner   string
	Letters []Failure
}

// Failure is one record that failed, with its error.
type Failure struct {
	ID    string
	Error string
}

// ReleaseParams are the arguments of [Store.Release].
type ReleaseParams struct {
	Owner string
	IDs   []string
	// Delay, when positive, keeps the records from being claimed again
	// before it has passed, measured from the store's clock at the time of
	// the call. Zero makes them claimable at once.
	Delay time.Duration
}

// Listener is implemented by stores that can announce new records
// (PostgreSQL LISTEN/NOTIFY, MongoDB change streams). Notifications are
// wake-ups only: the relay keeps polling as the safety net, because they
// are lost behind transaction-pooling proxies and across reconnects.
type Listener interface {
	// Listen returns a channel that receives a value soon after records
	// are committed. The store reconnects on its own; the channel is
	// closed when ctx ends or the store gives up, and the relay then calls
	// Listen again after a backoff. An error matching [ErrUnsupported]
	// means this deployment cannot notify (e.g. MongoDB without change
	// streams): the relay then polls only.
	Listen(ctx context.Context) (<-chan struct{}, error)
}

// Cleaner is implemented by stores that can delete delivered records.
type Cleaner interface {
	// Cleanup deletes at most p.Limit records delivered more than
	// p.OlderThan ago and returns how many it deleted. Undelivered and dead
	// records are never deleted.
	Cleanup(ctx context.Context, p CleanupParams) (int, error)
}

// CleanupParams are the arguments of [Cleaner.Cleanup].
type CleanupParams struct {
	OlderThan time.Duration
	Limit     int
}

// StatsReader is implemented by stores that can report on their backlog.
type StatsReader interface {
	Stats(ctx context.Context) (Stats, error)
}

// Stats describe an outbox at one moment.
type Stats struct {
	// Pending counts records not yet delivered and not dead, leased or not.
	Pending int64
	// Leased counts pending records held by a relay right now.
	Leased int64
	// Retrying counts pending records that failed at least once since they
	// were written or replayed: they have an error and a counted attempt.
	// A replayed record counts here again once a relay claims it.
	Retrying int64
	// Replayed counts pending records replayed from the dead letters
	// ([DeadLetterStore.ReplayDead]) and not claimed since: they keep the
	// error that dead-lettered them, with no attempt counted.
	Replayed int64
	// Dead counts dead letters.
	Dead int64
	// OldestPending is the CreatedAt of the oldest pending record, zero
	// when nothing is pending. time.Since(OldestPending) is the lag.
	OldestPending time.Time
	// Relays lists the owners holding leases, busiest first.
	Relays []RelayLeases
}

// RelayLeases tells how many records one relay holds.
type RelayLeases struct {
	Owner  string
	Leased int64
	// Until is the latest expiry among its leases.
	Until time.Time
}

// DeadLetterStore is implemented by stores that can list, replay and purge
// dead letters.
type DeadLetterStore interface {
	// ListDead returns dead letters in the order they were written.
	ListDead(ctx context.Context, p ListDeadParams) ([]DeadLetter, error)
	// ReplayDead makes dead letters deliverable again with their attempt
	// count reset, and returns how many it replayed.
	ReplayDead(ctx context.Context, p SelectDead) (int, error)
	// PurgeDead deletes dead letters and returns how many it deleted.
	PurgeDead(ctx context.Context, p SelectDead) (int, error)
}

// DeadLetterBacklog is implemented by dead-letter stores that can tell what
// a replay would hold back. Once replayed, a dead letter is again the
// earliest undelivered record of its key, so the pending records of its key
// written after it wait until it is delivered, or dead-lettered again after
// its retries. Without [ClaimParams.StrictOrder] they were flowing until
// the replay; with it they were waiting already.
type DeadLetterBacklog interface {
	// WaitingBehindDead counts the pending records (not delivered, not
	// dead) that share a key with one of the selected dead letters and were
	// written after the earliest of them. Dead letters without a key hold
	// nothing back.
	WaitingBehindDead(ctx context.Context, p SelectDead) (Waiting, error)
}

// Waiting is what [DeadLetterBacklog.WaitingBehindDead] counts.
type Waiting struct {
	// Records counts the pending records of the dead letters' keys.
	Records int64
	// Keys counts the keys those records have.
	Keys int64
}

// ListDeadParams are the arguments of [DeadLetterStore.ListDead].
type ListDeadParams struct {
	// IDs, when set, lists only these dead letters.
	IDs []string
	// AfterSeq lists dead letters with a Seq above it (for paging: pass
	// the Seq and ID of the last dead letter of the previous page).
	AfterSeq int64
	// AfterID, with AfterSeq, also lists dead letters with a Seq equal to
	// AfterSeq and an ID above AfterID. Stores whose Seq is unique across
	// keys (all but MongoDB) may ignore it.
	AfterID string
	// Limit is the most to return; zero means 100.
	Limit int
}

// SelectDead picks dead letters: the listed IDs, or all of them when All is
// set. IDs that are not dead letters are ignored.
type SelectDead struct {
	IDs []string
	All bool
}

// DeadLetter is a record that was given up on.
type DeadLetter struct {
	Record
	// DeadAt is when it was dead-lettered.
	DeadAt time.Time
}

// Migrator is implemented by stores that create their own schema.
type Migrator interface {
	// Migrate brings the schema to the current version. It is idempotent
	// and safe to run from several processes at once.
	Migrate(ctx context.Context) error
}

// Pinger is implemented by stores and publishers that can check that their
// server answers. Health endpoints use it.
type Pinger interface {
	Ping(ctx context.Context) error
}
