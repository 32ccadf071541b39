// Package mongostore is the MongoDB store of txoutbox: an outbox in a
// MongoDB collection, written inside the application's multi-document
// transactions and drained by [outbox.Relay].
//
//	store, err := mongostore.New(client, mongostore.Config{Database: "app"})
//	err = store.Migrate(ctx) // once, outside any transaction
//
//	sess, _ := client.StartSession()
//	defer sess.EndSession(ctx)
//	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
//		if _, err := users.UpdateOne(ctx, filter, update); err != nil {
//			return nil, err
//		}
//		return nil, store.Enqueue(ctx, events...) // ctx carries the transaction
//	})
//
//	relay, _ := outbox.NewRelay(store, publisher, outbox.RelayConfig{})
//	err = relay.Run(ctx)
//
// # Transactions
//
// Multi-document transactions need a replica set or a sharded cluster
// (a single-node replica set will do). [Store.Enqueue] writes into the
// transaction that its context carries and fails with [ErrNoTransaction]
// without one, unless [Config.AllowNonTransactional] is set, which gives up
// atomicity (see there). Run [Store.Migrate] first: it creates the
// collections and indexes, which MongoDB cannot create inside a
// transaction.
//
// # Lanes
//
// Relays divide the outbox by lanes. Each record is stored with its lane,
// [outbox.LaneOf] of its key (of its ID when it has none) modulo the lane
// count, [Config.Lanes] (default [outbox.DefaultLanes]), which the first
// [Store.Migrate] fixes by inserting one document per lane into
// "<Collection>_lanes": {_id: lane, owner, epoch, lease_until}. Live relays
// are in "<Collection>_relays": {_id: owner, lease_until}. A relay leases
// lanes, not records: it takes free or expired lanes ([Store.TakeLanes]:
// one findOneAndUpdate per lane, conditional on the epoch it saw, which it
// bumps), renews them ([Store.SyncLanes]), reads their pending records in
// sequence order ([Store.Read]: one find on the "pending" index, no
// in-memory sort) and records outcomes ([Store.Settle]). When a lane is
// taken from an owner whose lease expired, its first pending records that
// are due (not waiting out a retry delay) are charged one attempt, so that a message that crashes relays ends as a dead
// letter.
//
// Settles are fenced by the lane's epoch: an outcome applies only to a
// pending record whose lane is still at the epoch the relay holds. With
// transactions, the check and the updates run in one transaction that also
// writes the lane documents, so a settle and a takeover of one lane
// conflict and one of them waits for or retries after the other. Without
// transactions (FerretDB, a standalone mongod), the store reads the epochs,
// then writes only records of the lanes found at theirs: a takeover
// landing between the two can let a late settle still delete (or mark
// delivered) a record that the new owner publishes again (a duplicate), or
// set a retry delay or a dead letter for it.
//
// Settle deletes delivered records (deleteMany), as the relay's default
// (Retention 0) asks; with SettleParams.Retain (a positive Retention) it
// marks them delivered instead, and [Store.Cleanup] deletes them later.
//
// # Per-key order
//
// ObjectIDs and timestamps from several writers are not ordered, so each
// message gets a sequence number from a counter document per key
// ("<Collection>_keys"), updated in the writer's transaction. MongoDB lets
// one uncommitted transaction at a time write a document; a second one
// gets a WriteConflict labelled TransientTransactionError, which
// [mongo.Session.WithTransaction] retries once the first has ended. Hence
// the sequence numbers of a key increase in the order in which the
// transactions that wrote them commit, and within one transaction in the
// order of its Enqueue calls and of the messages in each call. All records
// of a key share a lane, which one relay holds at a time and reads in
// sequence order, so they reach the broker in that order, with any number
// of relays. A record whose transaction commits late is still delivered:
// a relay whose read comes back short reads its lanes from the head again.
//
// Messages without a key take no counter and are not ordered. Without
// transactions (AllowNonTransactional), order holds for the messages of a
// key written one call after another by one writer; two writers of one key
// at once may be numbered out of insert order.
//
// # Clock
//
// Leases, retry times and cleanup cutoffs are compared with the server's
// clock, as the store estimates it: MongoDB's $$NOW would read it exactly
// but FerretDB lacks it, so the store measures its clock's offset from the
// localTime of the primary's hello every 30 seconds (error: half a round
// trip plus a millisecond, plus drift) and adds it to the Go clock.
// Relays on machines with skewed clocks therefore agree on lease expiry.
//
// # Wake-ups
//
// [Store.Listen] opens a change stream on the outbox collection (inserts,
// and replays of dead letters); it keeps the resume token, resumes after
// errors, and on ChangeStreamHistoryLost starts afresh with one wake-up so
// that the relay rescans. Polling remains the safety net. Without change
// streams (standalone mongod, FerretDB) Listen fails with
// [outbox.ErrUnsupported] and the relay polls.
//
// # Documents
//
// A record is {_id: message ID, seq, topic, key, payload, headers (an
// array of {n, v} pairs), created_at, state: "pending"|"dead"|"delivered",
// lane, not_before (while a retry waits), attempts, last_error, dead_at,
// delivered_at}. Every index is partial on one state (plain on servers
// without partial indexes), so reading the backlog costs what the backlog
// holds, not the number of delivered records kept for Retention. CreatedAt
// is stored as a BSON date: to the millisecond.
//
// # FerretDB
//
// The store runs on FerretDB 1.x (MongoDB wire protocol over PostgreSQL or
// SQLite), without transactions (AllowNonTransactional) and without change
// streams; the conformance suites run there in CI. Its updates are a read
// followed by a blind write, so two conditional updates of one lane could
// both succeed: on FerretDB the store serializes changes to lane documents
// with a lock document in "<Collection>_locks" (an insert into a unique
// index, a delete by _id). FerretDB filters and sorts in its Go layer and
// pushes only equalities down, so a read of up to 16 lanes runs one find
// per lane and decodes those lanes' whole backlog: fine for tests, slow for
// large backlogs.
package mongostore
