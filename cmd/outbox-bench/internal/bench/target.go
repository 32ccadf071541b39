package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// errUnsupported marks a measurement a store or broker cannot take part in;
// the report says so instead of giving a number.
var errUnsupported = errors.New("not supported")

// unsupported returns an error matching errUnsupported with the reason.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUnsupported, fmt.Sprintf(format, args...))
}

// storeTarget is a database the run measures. Each measurement works in an
// outbox of its own (a schema, table or file), dropped at its end, so
// measurements never see each other's records.
type storeTarget interface {
	// info names the store for the report.
	info(ctx context.Context) Component
	// newOutbox creates a fresh outbox, with a business table beside it,
	// whose connections are sized for writers concurrent writers.
	newOutbox(ctx context.Context, tag string, writers int) (outboxTarget, error)
	// rawTable creates a plain table of its own, shaped like the outbox
	// (an identity, a UUID, a key, a payload, a time) with a primary key
	// and a unique ID, for the raw insert rate.
	rawTable(ctx context.Context) (rawTable, error)
	close() error
}

// tailTarget is a store whose outboxes can also be tailed: PostgreSQL with
// logical decoding (pgstore's Config.Tail). The tail scenario measures such
// outboxes beside the polled ones.
type tailTarget interface {
	// newTailOutbox is newOutbox for an outbox whose writers write to the
	// database's log and whose relays tail it, with what tailing needs
	// (a replication slot) created for it and dropped with it; an error
	// matching errUnsupported when the server cannot (wal_level).
	newTailOutbox(ctx context.Context, tag string, writers int) (outboxTarget, error)
}

// rawTable is a plain table.
type rawTable interface {
	// insert writes msgs with one multi-row INSERT in a transaction of its
	// own.
	insert(ctx context.Context, msgs []outbox.Message) error
	drop(ctx context.Context) error
}

// outboxTarget is one outbox in a store.
type outboxTarget interface {
	// relayStore returns a store handle with connections of its own, as a
	// relay in a process of its own would have, and how to close it.
	relayStore(ctx context.Context) (outbox.Store, func(), error)
	// business runs one business transaction: it updates a users row
	// (one of businessUsers, at random) and, in the same transaction,
	// enqueues msgs (none: the transaction alone). notify says how relays
	// are woken; stores without notifications ignore it.
	business(ctx context.Context, msgs []outbox.Message, notify Notify) error
	// enqueue writes msgs in one transaction of their own (the backlog).
	enqueue(ctx context.Context, msgs []outbox.Message) error
	// retain adds n delivered records spread over keys keys, as a busy
	// outbox keeps them until cleanup, and makes the store's statistics
	// current. errUnsupported when the store has no table.
	retain(ctx context.Context, n, keys int) error
	// settle makes the store's statistics and visibility information
	// current after a bulk change (VACUUM ANALYZE, ANALYZE), so that
	// measurements compare like with like.
	settle(ctx context.Context) error
	// simple returns the simple relay's access to this outbox, or
	// errUnsupported.
	simple() (simpleOutbox, error)
	// drop removes the outbox and closes its connections.
	drop(ctx context.Context) error
}

// simpleOutbox is what the simple relay needs from an outbox: one
// transaction that locks the oldest pending records, skipping locked ones,
// and marks them delivered before it commits.
type simpleOutbox interface {
	// claim begins a transaction and locks up to limit pending records,
	// oldest first (SELECT … FOR UPDATE SKIP LOCKED LIMIT n).
	claim(ctx context.Context, limit int) (simpleBatch, error)
}

// simpleBatch is one open transaction of the simple relay.
type simpleBatch interface {
	messages() []outbox.Message
	// markDelivered marks every record of the batch delivered and commits.
	markDelivered(ctx context.Context) error
	// rollback ends the transaction without a change.
	rollback()
}

// brokerTarget is a broker the run measures. Each measurement publishes to
// a topic (a NATS stream) of its own, deleted at its end.
type brokerTarget interface {
	info(ctx context.Context) Component
	newTopic(ctx context.Context, tag string) (topicTarget, error)
	close() error
}

// topicTarget is one topic of a broker.
type topicTarget interface {
	// name is the outbox Topic of the messages that go to it.
	name() string
	// publisher returns a txoutbox publisher with a connection of its own,
	// as a relay in a process of its own would have, and how to close it.
	publisher(ctx context.Context) (outbox.Publisher, func(), error)
	// producer returns the broker's own client, for the ceiling and the
	// simple relay.
	producer(ctx context.Context) (rawProducer, error)
	// consume reads the topic from its start and reports each message's
	// outbox ID to seen, until ctx ends. It returns once the consumer is
	// in place; read errors end up in the returned channel.
	consume(ctx context.Context, seen func(id string)) (<-chan error, error)
	// drop deletes the topic.
	drop(ctx context.Context) error
}

// rawProducer is a broker's own client.
type rawProducer interface {
	// publish sends every message asynchronously (kgo Produce, JetStream
	// PublishAsync) and returns once the broker acknowledged them all, or
	// with the first failure.
	publish(ctx context.Context, msgs []outbox.Message) error
	close()
}

// Notify is how a PostgreSQL writer wakes the relays.
type Notify string

// Ways to wake the relays.
const (
	// NotifyInterval is pgstore's default (Config.NotifyInterval, 5ms):
	// the first Enqueue of an interval notifies in its transaction, the
	// later ones are woken by one notification at the end of the
	// interval, sent outside any transaction.
	NotifyInterval Notify = "interval"
	// NotifyEveryTx queues a NOTIFY in every writer's transaction
	// (NotifyInterval < 0). PostgreSQL serializes the commits of
	// notifying transactions database-wide, each holding a lock through
	// its WAL flush.
	NotifyEveryTx Notify = "every-tx"
	// NotifyNone is pgstore's DisableNotify: relays poll.
	NotifyNone Notify = "none"
)

// businessUsers is the number of rows of the business table that the
// writers update, one at random per transaction: enough that concurrent
// writers rarely wait for each other's row lock.
const businessUsers = 10_000

// Component describes a store or broker in the report.
type Component struct {
	// Spec is the store or broker as given, secrets hidden.
	Spec string `json:"spec"`
	// Kind is postgres, mysql, sqlite, memory, kafka or nats.
	Kind string `json:"kind"`
	// Server is the server and its version, e.g. "PostgreSQL 15.20".
	Server string `json:"server"`
	// Client is the driver or client library and its version.
	Client string `json:"client"`
	// Notes are settings that matter to the numbers (synchronous_commit,
	// fsync, in-process).
	Notes string `json:"notes,omitempty"`
}

// Label names the component in tables, charts and file names: its kind,
// except that kfake is "kfake", so that a run over kfake and a real Kafka
// tells them apart.
func (c Component) Label() string {
	if c.Spec == "kfake" {
		return "kfake"
	}
	return c.Kind
}

// openStore returns the target a store spec names.
func openStore(ctx context.Context, spec string, dir string, cfg Config) (storeTarget, error) {
	lower := strings.ToLower(spec)
	switch {
	case lower == "memory":
		return newMemoryStore(), nil
	case lower == "sqlite":
		return newSQLiteStore(dir)
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return openPostgres(ctx, spec, cfg.PGNotifyInterval)
	case strings.HasPrefix(lower, "mysql://"), strings.HasPrefix(lower, "mariadb://"),
		strings.Contains(spec, "@tcp("), strings.Contains(spec, "@unix("):
		return openMySQL(ctx, spec)
	case strings.HasPrefix(lower, "mongodb"):
		return nil, unsupported("MongoDB: the bench writes in multi-document transactions, which need a replica set; not measured yet")
	}
	return nil, fmt.Errorf("%w: store %q: use postgres://…, mysql://…, sqlite or memory", outbox.ErrInvalidConfig, redact(spec))
}

// openBroker returns the target a broker spec names.
func openBroker(ctx context.Context, spec string, dir string, cfg Config) (brokerTarget, error) {
	lower := strings.ToLower(spec)
	switch {
	case lower == "memory":
		return newMemoryBroker(), nil
	case lower == "kfake":
		return startKfake(ctx)
	case strings.HasPrefix(lower, "kafka://"):
		return openKafka(ctx, spec, nil)
	case lower == "nats":
		return startNATS(ctx, dir, cfg.Logger)
	case strings.HasPrefix(lower, "nats://"), strings.HasPrefix(lower, "tls://"):
		return openNATS(ctx, spec, nil, cfg.Logger)
	}
	return nil, fmt.Errorf("%w: broker %q: use kfake, kafka://…, nats, nats://… or memory", outbox.ErrInvalidConfig, redact(spec))
}

// inTx runs work in one database/sql transaction and commits it: the
// business transaction of the MySQL and SQLite measurements.
func inTx(ctx context.Context, db *sql.DB, work func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := work(tx); err != nil {
		return err
	}
	return tx.Commit()
}
