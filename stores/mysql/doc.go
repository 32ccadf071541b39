// Package mysqlstore is the MySQL and MariaDB store of txoutbox: a
// transactional outbox table written in the application's own *sql.Tx and
// read by an [outbox.Relay].
//
// It needs MySQL 8.0 or later, or MariaDB 10.6 or later, with InnoDB, and
// the go-sql-driver/mysql driver (or any database/sql driver that speaks to
// those servers the same way).
//
// # Writing
//
// [Store.Enqueue] inserts messages with one multi-row INSERT in the caller's
// transaction. It never commits and never creates tables (DDL would commit
// the caller's transaction in MySQL):
//
//	tx, err := db.BeginTx(ctx, nil)
//	...
//	_, err = tx.ExecContext(ctx, `UPDATE users SET name = ?, updated_on = NOW() WHERE user_id = ?`, name, id)
//	err = store.Enqueue(ctx, tx, outbox.Message{Topic: "user_updated", Key: id, Payload: body})
//	err = tx.Commit() // the event exists if and only if this commit succeeds
//
// # Relaying
//
// The store implements [outbox.Store] and the optional [outbox.Cleaner],
// [outbox.StatsReader], [outbox.DeadLetterStore], [outbox.Migrator] and
// [outbox.Pinger]. MySQL has no LISTEN/NOTIFY, so it is not an
// [outbox.Listener]: the relay polls, quickly while there is work and backing
// off to [outbox.RelayConfig.PollInterval] while idle. A writer in the same
// process as the relay calls [outbox.Relay.Notify] after its commit to have
// the message relayed at once.
//
// Relays share the outbox by lanes. Enqueue puts each record in the lane
// [outbox.LaneOf] gives for its key, among [Config.Lanes] lanes (256 by
// default, fixed by the first Migrate); a relay leases lanes in the
// <Table>_lanes table, reads the pending records of its lanes in seq order,
// and settles them. Every lane lease has an epoch, bumped when the lane
// changes hands, and a settle applies only while the lane is at the epoch
// the relay holds, so a relay that lost its lanes cannot change what
// another relay now owns. The store opens no transaction: TakeLanes is one
// UPDATE (it reads back what it took, and charges records after a
// takeover, in further single statements), and Settle one DELETE of the
// delivered records and one UPDATE of the failed ones, each autocommitted
// on its own; so a relay that freezes between round trips holds no lock;
// and the store sets no session variable (such as MariaDB's
// idle_transaction_timeout) on the *sql.DB it is given, which is usually
// the one the service writes with.
//
// Settle deletes delivered records, as the relay's default (Retention 0)
// asks; with SettleParams.Retain (a positive Retention) it marks them
// delivered instead and [Store.Cleanup] deletes them later. Reads go
// through an index led by the record's state, so delivered records kept
// for a while cost them nothing. See the
// README for the tables, the indexes and their EXPLAIN output.
//
// # Connection settings
//
// The store needs no particular DSN option: it reads times whether or not
// parseTime is set, in any loc, and it uses UTC_TIMESTAMP(6) so the session
// time_zone does not matter. interpolateParams=true is recommended: it saves
// a round trip (a server-side prepare) on every statement with arguments.
// Run [Store.Migrate] once before use; it checks the server version.
package mysqlstore
