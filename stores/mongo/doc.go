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
// # Per-key order
//
// ObjectIDs and timestamps from several writers are not ordered, so each
// message gets a sequence number from a counter document per key
// ("<Collection>.keys"), updated in the writer's transaction. MongoDB lets
// one uncommitted transaction at a time write a document; a second one
// gets a WriteConflict labelled TransientTransactionError, which
// [mongo.Session.WithTransaction] retries once the first has ended. Hence:
//
//   - the sequence numbers of a key increase in the order in which the
//     transactions that wrote them commit, and within one transaction in
//     the order of its Enqueue calls and of the messages in each call;
//   - a relay never hands out a record while an older record of its key is
//     pending (waiting, leased or waiting for a retry) or, with
//     StrictOrder, dead; so the records of a key reach the broker in
//     sequence order, with any number of relays;
//   - a record whose transaction commits late is still delivered: the claim
//     works from record states, not from a watermark, and a key's later
//     records cannot commit before it.
//
// Messages without a key take no counter and are not ordered. Without
// transactions (AllowNonTransactional), order holds for the messages of a
// key written one call after another by one writer; two writers of one key
// at once may be numbered out of insert order.
//
// # Relay side
//
// Claims are serialized per outbox by a lock document ("<Collection>.locks")
// taken with an insert into a unique index and released by a delete, both
// atomic on MongoDB and on FerretDB, whose updates are a read followed by a
// blind write. Under the lock a claim scans the pending records in sequence
// order (skipping keys whose head is leased or waiting), leases up to Limit
// of them with one updateMany that repeats the deliverability test, reads
// them back by their claim token, and, on deployments with transactions,
// checks that no older pending record of a picked key exists (one that
// committed while the scan was past its place); records it cannot vouch for
// are released at once. Settling is one write per call: updateMany for
// MarkDelivered and Release, an unordered bulk write for ScheduleRetry and
// DeadLetter. (On FerretDB, each updateMany is sent as a bulk write of one
// update per record, which it can look up by _id.)
//
// A lock whose holder died expires after 20 seconds: claims stall that long
// after a relay crashes while claiming. A claim that took longer than half
// of that writes nothing and returns no records.
//
// Leases, retry times and cleanup cutoffs are compared with the server's
// clock, as the store estimates it: MongoDB's $$NOW would read it exactly
// but FerretDB lacks it, so the store measures its clock's offset from the
// localTime of the primary's hello every 30 seconds (error: half a round
// trip plus a millisecond, plus drift). Relays on machines with skewed
// clocks therefore agree on lease expiry.
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
// lease_owner, lease_until, lease_token, available_at, attempts,
// last_error, dead_at, delivered_at}. Every index is partial on one state (plain on servers
// without partial indexes), so the claim's cost follows the backlog, not
// the number of delivered records kept for Retention. CreatedAt is stored
// as a BSON date: to the millisecond.
//
// # FerretDB
//
// The store runs on FerretDB 1.x (MongoDB wire protocol over PostgreSQL or
// SQLite), without transactions (AllowNonTransactional) and without change
// streams; the conformance suites run there in CI. FerretDB filters and
// sorts in its Go layer, so every claim reads all pending records: fine for
// tests, slow for large backlogs.
package mongostore
