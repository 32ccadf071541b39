package outbox

import "context"

// Publisher sends messages to a broker.
type Publisher interface {
	// Publish sends msgs, in slice order, and returns one result per
	// message: nil once the broker has durably accepted it, an error
	// otherwise. The returned slice has len(msgs) elements.
	//
	// Messages with the same non-empty Key must reach the broker in slice
	// order. When one of them fails, the publisher must not let a later
	// message with that key reach the broker in this call: their results
	// are [ErrNotAttempted] (or an error wrapping it). A producer with
	// several requests in flight can reorder, so an implementation waits
	// for the fate of a key's message before sending the next, or sends
	// them in one request that succeeds or fails as a whole.
	//
	// An error that retrying cannot fix should be wrapped with [Permanent].
	// When the broker cannot be reached, results should match
	// [ErrUnavailable]: the relay then returns the batch without counting
	// attempts and pauses before trying again. When the broker answers but
	// cannot take messages for one topic now, that topic's results should
	// match [ErrTopicUnavailable] instead: the relay then holds back that
	// topic alone, without counting attempts, and keeps publishing the
	// others.
	// Publish must return when ctx ends; results not yet known are then
	// errors.
	Publish(ctx context.Context, msgs []Message) []error
}
