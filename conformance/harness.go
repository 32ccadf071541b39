package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance/ledger"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Outbox is one isolated outbox under test: the relay-side store and a way
// to write to it in transactions of the same database.
type Outbox struct {
	// Store is the relay side.
	Store outbox.Store
	// Begin opens a write transaction; messages enqueued in it exist if
	// and only if it commits.
	Begin func(ctx context.Context) (WriteTx, error)
}

// WriteTx is a database transaction of the application, as the store's
// Enqueue sees it.
type WriteTx interface {
	// Enqueue calls the store's Enqueue within the transaction.
	Enqueue(ctx context.Context, msgs ...outbox.Message) error
	// Commit commits the transaction.
	Commit(ctx context.Context) error
	// Rollback aborts the transaction. It is called, deferred, after
	// Commit too, and must then do nothing.
	Rollback(ctx context.Context) error
}

// OutboxOptions configure the store a harness builds.
type OutboxOptions struct {
	// Limits must be passed to the store's configuration, so that Enqueue
	// enforces them.
	Limits outbox.Limits
	// Lanes, when positive, must be passed to the store's configuration
	// as the lane count its Migrate creates. Zero means the store's
	// default ([outbox.DefaultLanes]).
	Lanes int
}

// StoreHarness builds outboxes of one store adapter for the store and relay
// suites.
type StoreHarness struct {
	// New returns an empty outbox of its own for t (its own schema,
	// database or collection, migrated), removed when t ends. Tests call it
	// in parallel.
	New func(t *testing.T, opts OutboxOptions) Outbox

	// WithoutTransactions, when set, says why the store cannot roll back
	// (for example "FerretDB has no multi-document transactions"); tests
	// that need a rollback or a transaction held open skip with it.
	WithoutTransactions string

	// SingleWriter, when set, says why the database lets one write
	// transaction in at a time (SQLite); tests that hold a write
	// transaction open while other writers go on skip with it.
	SingleWriter string

	// Scale multiplies the message counts of the heavier tests; zero
	// means 1. Use less than 1 for slow servers.
	Scale float64
}

// Broker is one isolated broker namespace under test.
type Broker struct {
	// Publisher is the adapter under test.
	Publisher outbox.Publisher

	// Topic returns a new topic (Kafka topic, NATS subject) that exists on
	// the broker and that Consume can read, unique to this call.
	Topic func(t *testing.T) string

	// Consume calls fn for every message on topics, from the oldest, in
	// the order the broker keeps per key, until ctx ends; then it returns
	// ctx.Err(). It returns another error only when it cannot go on.
	Consume func(ctx context.Context, topics []string, fn func(Received)) error

	// MissingTopic, when set, returns a topic the broker refuses to
	// publish to (it does not exist and is not created on demand).
	MissingTopic func(t *testing.T) string

	// MaxMessageBytes, when positive, is the broker's message size limit:
	// a larger payload must be refused.
	MaxMessageBytes int
}

// Received is a message as a consumer sees it on the broker.
type Received = ledger.Received

// PublisherHarness builds brokers of one publisher adapter for the publisher
// and relay suites.
type PublisherHarness struct {
	// New returns a broker namespace of its own for t, removed when t
	// ends. Tests call it in parallel.
	New func(t *testing.T) Broker
}

// RelayHarness pairs a store and a broker for the end-to-end relay suite.
type RelayHarness struct {
	Store  StoreHarness
	Broker PublisherHarness
	// HoldOpen is how long a writer keeps a transaction open while the
	// relay delivers later messages. Zero means 3 seconds.
	HoldOpen time.Duration
}

func (h RelayHarness) holdOpen() time.Duration {
	if h.HoldOpen <= 0 {
		return 3 * time.Second
	}
	return h.HoldOpen
}

func (h StoreHarness) scale(n int) int {
	if h.Scale <= 0 {
		return n
	}
	return max(1, int(float64(n)*h.Scale))
}
