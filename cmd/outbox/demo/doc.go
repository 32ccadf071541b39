// Package demo is `outbox demo`: the whole txoutbox pipeline on one machine,
// with nothing to install.
//
// A simulated service updates rows of a users table and, in the same
// transaction, enqueues a user.updated event for each change; a relay moves
// the committed events to a broker; a consumer reads the broker and feeds a
// ledger (ledger.Ledger) that compares what was committed with what
// arrived. A progress line shows events written and delivered, the lag
// between them and the commit-to-delivery latency; at the end the ledger's
// verdict says whether anything was lost or reordered, and how many
// duplicates arrived.
//
// By default everything is embedded and temporary: an SQLite database and a
// NATS server with JetStream (github.com/nats-io/nats-server/v2, in this
// process) in a temporary directory that is removed afterwards, or an
// in-process kfake Kafka cluster. Real servers are used when their URLs are
// given. With chaos, the relay is killed (SIGKILL when relays run as
// processes) and restarted during the run, and the verdict must still show
// nothing lost.
//
// [Run] runs a demo; [Command] is the cobra command of the outbox CLI.
package demo
