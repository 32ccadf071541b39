// Package sqlitestore is the SQLite store of txoutbox: application code
// enqueues events in its own *sql.Tx, and a relay ([outbox.Relay]) reads and
// publishes them. It uses database/sql with the pure-Go driver
// modernc.org/sqlite, so it needs no cgo; it is the embedded default of
// txoutbox and a real option for edge services.
//
//	db, err := sqlitestore.Open("app.db") // WAL, busy_timeout, _txlock=immediate
//	store, err := sqlitestore.New(db, sqlitestore.Config{})
//	err = store.Migrate(ctx)
//
//	tx, err := db.BeginTx(ctx, nil)
//	_, err = tx.ExecContext(ctx, `UPDATE users SET name = ? WHERE user_id = ?`, name, id)
//	err = store.Enqueue(ctx, tx, outbox.Message{Topic: "user_updated", Key: id, Payload: body})
//	err = tx.Commit() // the event exists if and only if this commit succeeds
//
//	relay, err := outbox.NewRelay(store, publisher, outbox.RelayConfig{})
//	err = relay.Run(ctx)
//
// # Lanes
//
// Relays divide the outbox by lanes. Every record belongs to the lane of its
// key ([outbox.LaneOf]; a record without a key, to the lane of its ID), so
// all records of a key share a lane. A relay leases lanes, not records: only
// the holder of a lane reads and settles its records, which keeps per-key
// order with any number of relays and processes. [Config].Lanes sets the
// lane count (default [outbox.DefaultLanes]); the first [Store.Migrate] of a
// table fixes it, and it bounds how many relays can share the work.
//
// Migrate creates, beside the outbox table, "<Table>_lanes" (one row per
// lane: its owner, its epoch, and when its lease ends) and
// "<Table>_relays" (the live relays and when their lease ends). Each lease
// has an epoch, bumped whenever the lane changes hands; outcomes apply only
// to records of lanes still at the epoch the relay holds, so a relay that
// lost a lane (it paused past its lease, say) can at most publish
// duplicates: its late outcomes change nothing. A relay that dies leaves
// nothing locked: its lanes are taken over once their leases run out.
//
// Settle deletes delivered records (one DELETE, fenced like every outcome),
// as the relay's default (Retention 0) asks; with SettleParams.Retain (a
// positive Retention) it marks them delivered instead, and [Store.Cleanup]
// deletes them later.
//
// # Concurrency
//
// SQLite has one writer at a time, in this process and any other that opens
// the file. The store leans on that instead of row locks: taking lanes reads
// which are still free at the epoch the relay saw and takes them in one
// write transaction, which no other writer can interleave with, so a lane
// goes to one relay. Reading records is one SELECT that takes no lock (WAL
// readers never block the writer), so polling does not slow writers.
//
// Because a write transaction excludes every other writer, commit order is
// Seq order: SQLite has no late-commit gaps, and a transaction held open
// holds every other writer, the relay's outcomes included, back until it
// ends. Keep write transactions short.
//
// Within one process, write transactions of databases from [Open] and the
// store's own writes queue for the file's write lock in Go, in arrival
// order, before SQLite's lock; SQLite's busy timeout, a sleep-and-retry
// loop, then only arbitrates between processes. See [Open] for pool
// settings.
//
// # Time
//
// The store stamps lane leases, retries and deliveries with the local
// clock, in INTEGER Unix microseconds (exact round trips). SQLite is
// embedded, so every process that shares the file shares that clock;
// SQLite's own clock functions have millisecond precision at best.
//
// # Wake-ups
//
// A database opened with [Open] reports commits that inserted into the
// outbox table to [Store.Listen] in the same process, so a relay there
// publishes at once; see [Store.Listen] for the limits.
package sqlitestore
