package outbox

import "time"

// Observer receives the relay's events, for metrics and tracing. Methods are
// called synchronously from the relay's workers, possibly concurrently, so
// they must be quick and safe for concurrent use. Events describe batches,
// not messages, to keep the cost low at high rates.
type Observer interface {
	// ObserveRead is called after every read of the relay's lanes,
	// successful or not.
	ObserveRead(ReadEvent)
	// ObserveBatch is called after a batch was published and its outcomes
	// were recorded in the store.
	ObserveBatch(BatchEvent)
	// ObserveLanes is called after every round of lane leasing (a renewal,
	// and the lanes taken, lost or given back), successful or not.
	ObserveLanes(LaneEvent)
}

// ReadEvent describes one call to [Store.Read].
type ReadEvent struct {
	Owner string
	// Records is how many records the read returned.
	Records  int
	Duration time.Duration
	Err      error
}

// LaneEvent describes one round of lane leasing.
type LaneEvent struct {
	Owner string
	// Held is how many lanes the relay holds after the round.
	Held int
	// Taken, Lost and Released count the lanes taken in the round, found
	// taken over by another relay, and given back.
	Taken, Lost, Released int
	// Relays is the number of live relays the store reported.
	Relays int
	Err    error
}

// BatchEvent describes one batch after publication.
type BatchEvent struct {
	Owner string
	// Records as read, and Outcomes, parallel to them.
	Records  []Record
	Outcomes []Outcome
	// PublishDuration is how long the Publish call took.
	PublishDuration time.Duration
	// PublishedAt is when the Publish call returned; PublishedAt minus a
	// record's CreatedAt is its commit-to-publish lag.
	PublishedAt time.Time
	// SettleErr is the error of recording the outcomes in the store, if
	// that failed after its retries (the records stay pending and are
	// published again).
	SettleErr error
}

// Outcome is what the relay did with one record of a batch.
type Outcome struct {
	Status OutcomeStatus
	// Err is the publish error for Retried and DeadLettered, and for
	// Released when the broker could not take the record's topic
	// ([ErrTopicUnavailable]).
	Err error
	// RetryIn is the backoff before the next attempt, for Retried; for
	// Released, how long the record and its key wait because its topic is
	// paused (zero otherwise).
	RetryIn time.Duration
}

// OutcomeStatus says what became of a record of a batch.
type OutcomeStatus int

// Outcome statuses.
const (
	// Delivered: the broker acknowledged it.
	Delivered OutcomeStatus = iota + 1
	// Retried: publishing failed; it is scheduled again after a backoff.
	Retried
	// DeadLettered: it failed MaxAttempts times or permanently.
	DeadLettered
	// Released: it went back to the relay's queue uncounted, because it
	// was not attempted (an earlier message of its key failed, its topic
	// is paused, or the relay was stopping) or the broker could not take
	// it as a whole or for its topic ([ErrUnavailable],
	// [ErrTopicUnavailable]). The store is not written.
	Released
)

func (s OutcomeStatus) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Retried:
		return "retried"
	case DeadLettered:
		return "dead-lettered"
	case Released:
		return "released"
	}
	return "unknown"
}
