// Package outbox is the engine of txoutbox, a transactional outbox for Go.
//
// A service writes its business rows and the events that describe them in
// one database transaction, through the Enqueue method of a store adapter
// (stores/postgres, stores/mysql, stores/mongo, ...). A [Relay] then moves
// committed events to a broker through a [Publisher] (brokers/kafka,
// brokers/nats, ...):
//
//	tx, _ := pool.Begin(ctx)
//	_, _ = tx.Exec(ctx, `UPDATE users SET name = $1 WHERE user_id = $2`, name, id)
//	_ = store.Enqueue(ctx, tx, outbox.Message{Topic: "user.updated", Key: id, Payload: body})
//	_ = tx.Commit(ctx) // the event exists if and only if this commit succeeds
//
//	relay, _ := outbox.NewRelay(store, publisher, outbox.RelayConfig{Logger: logger})
//	_ = relay.Run(ctx)
//
// # Promises
//
// Every store and publisher adapter passes the conformance suites
// (module github.com/txoutbox/txoutbox/conformance), which prove:
//
//   - Atomicity: a message is in the outbox if and only if the transaction
//     that wrote it committed.
//   - At-least-once: every committed message reaches the broker at least once,
//     whatever crashes or outages happen in between. A store never records a
//     delivery before the broker has acknowledged it.
//   - Per-key order: messages with the same [Message.Key] reach the broker in
//     the order they were written, with any number of relays, across retries,
//     and when one message of the key fails.
//   - Bounded duplicates: duplicates happen only after a crash or an
//     unacknowledged publish, and carry the original [Message.ID], so
//     consumers and brokers can drop them.
//   - No poison stall: a message the broker keeps rejecting is retried with
//     backoff, then dead-lettered with its error; other keys keep flowing.
//     See [RelayConfig.StrictOrder] for what happens to later messages of
//     the same key.
//   - No gaps: a message whose transaction commits late is still delivered.
//
// # Contracts for adapter authors
//
// The relay depends only on [Store] and [Publisher]. Optional capabilities
// ([Listener], [Cleaner], [StatsReader], [DeadLetterStore],
// [DeadLetterBacklog], [Migrator], [Pinger]) are discovered by interface
// assertion. This module imports nothing outside the standard library; the
// in-memory reference implementation in package memory is the executable
// specification.
package outbox
