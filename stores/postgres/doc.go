// Package pgstore is the PostgreSQL store of txoutbox, on pgx v5: the outbox
// is a table that the application writes in its own transactions and that
// relays read from, any number of them at once, keeping per-key order.
//
// Writing: [Store.Enqueue] takes the caller's pgx.Tx, [Store.EnqueueSQL]
// the caller's *sql.Tx (database/sql through pgx's stdlib driver or lib/pq,
// and so GORM, sqlx, bun or sqlc on database/sql); both write all their
// messages with one statement. The messages exist if and only if that
// transaction commits; a pool or a bare connection is not a transaction and
// does not compile:
//
//	tx, err := pool.Begin(ctx)
//	if err != nil { ... }
//	defer tx.Rollback(ctx)
//	_, err = tx.Exec(ctx, `UPDATE users SET name = $1, updated_on = now() WHERE user_id = $2`, name, id)
//	err = store.Enqueue(ctx, tx, outbox.Message{Topic: "user_updated", Key: id, Payload: body})
//	err = tx.Commit(ctx)
//
// Relaying: a [Store] is an outbox.Store with every optional capability, so
// it plugs into outbox.NewRelay as it is:
//
//	store, err := pgstore.New(pool, pgstore.Config{Schema: "public", Table: "outbox"})
//	err = store.Migrate(ctx) // or `outbox migrate` in a deployment step
//	relay, err := outbox.NewRelay(store, publisher, outbox.RelayConfig{})
//	err = relay.Run(ctx)
//
// Relays share the table by lanes: every record belongs to the lane of its
// key (outbox.LaneOf, modulo [Config.Lanes], fixed by the first Migrate),
// and a relay leases lanes in "<Table>_lanes" (live relays are listed in
// "<Table>_relays"), reads their pending records in Seq order with one
// SELECT whose plan does not depend on the table's statistics (an ordered
// scan of a partial index of pending records), and settles them fenced by
// each lane's epoch, which changes whenever the lane changes hands: a relay
// that lost a lane changes nothing of its records. Enqueue sends a NOTIFY
// that PostgreSQL delivers on commit, at most one per
// [Config.NotifyInterval] (the calls after it within the interval are woken
// by one notification when the interval ends), which [Store.Listen] turns
// into wake-ups; the relay polls as well. The module's README.md describes the
// tables, the lanes, their cost, and benchmarks.
//
// The store uses the database clock (now()) for lane leases and retries, so
// relays with skewed clocks agree. Errors wrap the pgx error and, where one
// fits, a sentinel of package outbox: ErrSchemaMissing when the table does
// not exist (run Migrate), ErrDatabaseMissing when the database does not,
// ErrAccessDenied when the server refuses the role, its password or a
// privilege, ErrUnavailable when the server cannot be reached.
package pgstore
