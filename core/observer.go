package outbox

import "time"

// Observer receives the relay's events, for metrics and tracing. Methods are
// called synchronously from the relay's workers, possibly concurrently, so
// they must be quick and safe for concurrent use. Events describe batches,
// not messages, to keep the cost low at high rates.
type Observer interface {
	// ObserveClaim is called after every claim, successful or not.
	ObserveClaim(ClaimEvent)
	// ObserveBatch is called after a claimed batch was published and its
	// outcomes were recorded in the store.
	ObserveBatch(BatchEvent)
}

// ClaimEvent describes one call to [Store.Claim].
type ClaimEvent struct {
	Owner    string
	Claimed  int
	Duration time.Duration
	Err      error
}

// BatchEvent describes one claimed batch after publication.
type BatchEvent struct {
	Owner string
	// Records as claimed, and Outcomes, parallel to them.
	Records  []Record
	Outcomes []Outcome
	// PublishDuration is how long the Publish call took.
	PublishDuration time.Duration
	// PublishedAt is when the Publish call returned; PublishedAt minus a
	// record's CreatedAt is its commit-to-publish lag.
	PublishedAt time.Time
	// SettleErr is the error of recording the outcomes in the store, if
	// that failed after its retries (the records are then published again
	// once their lease expires).
	SettleErr error
}

// Outcome is what the relay did with one claimed record.
type Outcome struct {
	Status OutcomeStatus
	// Err is the publish error for Retried and DeadLettered, and for
	// Released when the broker could not take the record's topic
	// ([ErrTopicUnavailable]).
	Err error
	// RetryIn is the backoff before the next attempt, for Retried; for
	// Released, how long the record stays unclaimable because its topic
	// is paused (zero otherwise).
	RetryIn time.Duration
}

// OutcomeStatus says what became of a claimed record.
type OutcomeStatus int

// Outcome statuses.
const (
	// Delivered: the broker acknowledged it.
	Delivered OutcomeStatus = iota + 1
	// Retried: publishing failed; it is scheduled again after a backoff.
	Retried
	// DeadLettered: it failed MaxAttempts times or permanently.
	DeadLettered
	// Released: it went back to the outbox uncounted, because it was not
	// attempted (an earlier message of its key failed, its topic is
	// paused, or the relay was stopping) or the broker could not take it
	// as a whole or for its topic ([ErrUnavailable], [ErrTopicUnavailable]).
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
