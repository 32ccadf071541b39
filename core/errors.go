package outbox

import (
	"errors"
	"fmt"
)

// Validation errors. Enqueue functions of every store return an error that
// matches [ErrInvalidMessage] and one of the more specific errors below
// (with errors.Is), before anything is written.
var (
	// ErrInvalidMessage matches every message validation error.
	ErrInvalidMessage = errors.New("outbox: invalid message")
	// ErrMissingID: the message has no ID (Enqueue assigns one when it is empty).
	ErrMissingID = errors.New("outbox: message ID is empty")
	// ErrInvalidID: the ID is not a UUID in its canonical text form.
	ErrInvalidID = errors.New("outbox: message ID is not a UUID")
	// ErrMissingTopic: the message has no topic.
	ErrMissingTopic = errors.New("outbox: message topic is empty")
	// ErrInvalidTopic: the topic is too long or holds characters brokers reject.
	ErrInvalidTopic = errors.New("outbox: message topic is invalid")
	// ErrInvalidKey: the key is longer than [MaxKeyBytes].
	ErrInvalidKey = errors.New("outbox: message key is invalid")
	// ErrPayloadTooLarge: the payload is larger than [Limits.MaxPayloadBytes].
	ErrPayloadTooLarge = errors.New("outbox: message payload too large")
	// ErrInvalidHeader: a header name is empty, too long or not an HTTP token,
	// or a value holds a line break.
	ErrInvalidHeader = errors.New("outbox: invalid message header")
)

// Relay and store errors.
var (
	// ErrInvalidConfig matches every configuration error returned by
	// constructors (NewRelay and the adapters' New functions).
	ErrInvalidConfig = errors.New("outbox: invalid configuration")
	// ErrNotAttempted is the publish result of a message that the publisher
	// did not send: an earlier message with the same key in the same batch
	// failed, or the context ended before its turn. The relay returns such
	// messages to the outbox without counting an attempt.
	ErrNotAttempted = errors.New("outbox: not attempted")
	// ErrPermanent marks a publish error that retrying cannot fix (for
	// example a message larger than the broker accepts). The relay
	// dead-letters such a message at once instead of retrying it. Wrap an
	// error with [Permanent] to mark it.
	ErrPermanent = errors.New("outbox: permanent failure")
	// ErrNotFound: a dead letter or record with that ID does not exist.
	ErrNotFound = errors.New("outbox: not found")
	// ErrUnavailable: the database or broker could not be reached. It is
	// transient; the relay retries with backoff.
	ErrUnavailable = errors.New("outbox: backend unavailable")
	// ErrAccessDenied: the database or broker answers but refuses the
	// credentials (an unknown user, a wrong password, a failed SASL or
	// NATS authentication), or the user lacks a privilege the operation
	// needs. Retrying does not help until someone fixes the credentials or
	// the grants. Stores report it alone. A broker error that matches it
	// also matches [ErrUnavailable] when it refuses every message (the
	// relay pauses instead of spending attempts), and not when it refuses
	// one topic (the message is retried and dead-lettered as usual).
	ErrAccessDenied = errors.New("outbox: access denied")
	// ErrDatabaseMissing: the server answers but the database named in the
	// connection settings does not exist (for SQLite, the directory of the
	// database file). Migrate does not create databases.
	ErrDatabaseMissing = errors.New("outbox: database does not exist")
	// ErrTopicUnavailable: the broker answers, but cannot take messages
	// for this topic now (for example a Kafka topic whose partitions have
	// fewer in-sync replicas than min.insync.replicas, or no leader). It
	// is transient and scoped to the topic: the relay holds back that
	// topic's messages, without counting attempts, and keeps publishing
	// the other topics. It does not match [ErrUnavailable], which pauses
	// the whole relay.
	ErrTopicUnavailable = errors.New("outbox: topic unavailable")
	// ErrNoTransaction: Enqueue was called outside a transaction where the
	// store needs one to keep its atomicity promise.
	ErrNoTransaction = errors.New("outbox: enqueue needs a transaction")
	// ErrUnsupported: the server version or deployment lacks a feature the
	// adapter needs. The error text says which one.
	ErrUnsupported = errors.New("outbox: unsupported server")
	// ErrSchemaMissing: the outbox tables (collections) do not exist.
	// Create them with the store's Migrate method ([Migrator]), or with
	// `outbox migrate`.
	ErrSchemaMissing = errors.New("outbox: the outbox tables do not exist")
	// ErrReadTimeout: a read of the relay's lanes took longer than
	// [RelayConfig.ReadTimeout]. The database answers but is slow (a lock
	// held by another session, an overloaded server): the relay retries
	// with backoff.
	ErrReadTimeout = errors.New("outbox: read timed out")
	// ErrRelayRunning: Run was called on a relay that is already running.
	ErrRelayRunning = errors.New("outbox: relay is already running")
	// ErrLostLog: a [LogStream] no longer holds its log (another relay may
	// hold it now); its Park wrote nothing.
	ErrLostLog = errors.New("outbox: the relay no longer holds the log")
)

// ValidationError describes why one message of an Enqueue call was rejected.
// It matches [ErrInvalidMessage] and its more specific cause with errors.Is.
type ValidationError struct {
	// Index of the message in the slice given to Enqueue.
	Index int
	// ID of the message, when it has one.
	ID string
	// Err is the specific sentinel, such as [ErrPayloadTooLarge].
	Err error
	// Detail says what exactly is wrong.
	Detail string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("outbox: message %d (id %q) rejected: %v: %s", e.Index, e.ID, e.Err, e.Detail)
}

// Unwrap returns the specific cause.
func (e *ValidationError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidMessage].
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidMessage }

// Permanent marks err as an error that retrying cannot fix; the relay
// dead-letters the message at once. errors.Is(Permanent(err), ErrPermanent)
// and errors.Is(Permanent(err), err) both hold. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() error        { return e.err }
func (e permanentError) Is(target error) bool { return target == ErrPermanent }
