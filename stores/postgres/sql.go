package pgstore

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// names are the identifiers a store uses, derived from its Config once.
type names struct {
	schema     string // as configured, unquoted
	table      string // as configured, unquoted
	qualTab    string // "schema"."table"
	qualLanes  string // "schema"."table_lanes"
	qualRelays string // "schema"."table_relays"
	qualVer    string // "schema"."table_migrations"
	channel    string // NOTIFY channel, unquoted
	migrKey    int64  // advisory lock that serializes migrations in this schema
}

// maxChannelLen is the longest NOTIFY channel name PostgreSQL accepts.
const maxChannelLen = 63

func newNames(schema, table string) names {
	n := names{
		schema:     schema,
		table:      table,
		qualTab:    pgx.Identifier{schema, table}.Sanitize(),
		qualLanes:  pgx.Identifier{schema, table + "_lanes"}.Sanitize(),
		qualRelays: pgx.Identifier{schema, table + "_relays"}.Sanitize(),
		qualVer:    pgx.Identifier{schema, table + "_migrations"}.Sanitize(),
		channel:    channelName(schema, table),
		migrKey:    lockKey("txoutbox migrate " + schema),
	}
	return n
}

// channelName is "<schema>.<table>", or when that is longer than a channel
// name may be, its first 46 bytes, an underscore and a 16-digit hash of the
// whole.
func channelName(schema, table string) string {
	name := schema + "." + table
	if len(name) <= maxChannelLen {
		return name
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s_%016x", name[:maxChannelLen-17], h.Sum64())
}

// lockKey turns a name into a key for pg_advisory_xact_lock. Advisory locks
// are database-wide, so the names carry a prefix that no other application
// is likely to hash.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// index returns the quoted name of one of the table's indexes, unqualified
// (an index lives in its table's schema).
func (n names) index(suffix string) string {
	return pgx.Identifier{n.table + "_" + suffix}.Sanitize()
}

// statements are the SQL texts of a store, built once so that pgx caches
// their prepared forms per connection.
type statements struct {
	insertOne, insertMany, notify, notifyNow, laneCount string

	planGuard string

	relayUpsert, relaysExpire, renewLanes, laneView, liveRelays string
	takeLanes, releaseLanes, leave                              string

	read [4]string // by readVariant

	delivered, deleteDelivered, failed string

	park, parkedKeys string

	cleanup, statsGuard, stats, statsTopics, statsRelays, statsLagging string

	listDead, replayDead, purgeDead, waitingBehindDead string

	version string
}

// recordColumns are the columns read into an outbox.Record, in scan order.
const recordColumns = "seq, id, lane, topic, key, payload, headers, created_at, attempts, last_error, not_before"

// readVariant numbers the four forms of Read's statement: with or without
// skipped keys, with or without strict order.
func readVariant(skip, strict bool) int {
	v := 0
	if skip {
		v |= 1
	}
	if strict {
		v |= 2
	}
	return v
}

// heldLanes is the condition that the row l of the lanes table is one of
// the lanes $2 at its epoch, $3 being the epochs by lane ($3[lane+1]; see
// laneArrays): found by primary key, its epoch compared in constant time.
const heldLanes = `l.lane = ANY($2::integer[]) AND l.epoch = ($3::bigint[])[l.lane + 1]`

// fence is the CTE of Settle's statements: the lanes $2 still at their
// epochs, their rows locked in lane order (see Settle's statements).
const fence = `WITH fence AS MATERIALIZED (
	SELECT l.lane FROM {lanes} l
	WHERE ` + heldLanes + `
	ORDER BY l.lane
	FOR KEY SHARE OF l
)`

func newStatements(n names) statements {
	r := strings.NewReplacer("{table}", n.qualTab, "{lanes}", n.qualLanes, "{relays}", n.qualRelays, "{versions}", n.qualVer)
	sql := func(s string) string { return strings.TrimSpace(r.Replace(stripComments(s))) }
	st := statements{
		// The enqueue statements, one for a message and one for many, are
		// what both Enqueue (pgx) and EnqueueSQL (database/sql) send, as one
		// statement: the INSERT runs in a data-modifying CTE, and the same
		// statement queues the NOTIFY (delivered on commit), unless $7, the
		// channel, is empty (Config.DisableNotify). $8 is the lane.
		insertOne: sql(`
WITH inserted AS (
	INSERT INTO {table} (id, lane, topic, key, payload, headers, created_at)
	VALUES ($1::uuid, $8::integer, $2::text, $3::text, $4::bytea, nullif($5::text, '')::jsonb, $6::timestamptz))
SELECT pg_notify($7::text, '') WHERE $7::text <> ''`),

		// WITH ORDINALITY and ORDER BY make the identity column number the
		// messages in the order of the slice given to Enqueue.
		insertMany: sql(`
WITH inserted AS (
	INSERT INTO {table} (id, lane, topic, key, payload, headers, created_at)
	SELECT m.id, m.lane, m.topic, m.key, m.payload, nullif(m.headers, '')::jsonb, m.created_at
	FROM unnest($1::uuid[], $8::integer[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::timestamptz[])
		WITH ORDINALITY AS m(id, lane, topic, key, payload, headers, created_at, ord)
	ORDER BY m.ord)
SELECT pg_notify($7::text, '') WHERE $7::text <> ''`),

		notify: `SELECT pg_notify($1::text, '')`,

		// The notification at the end of a NotifyInterval, in a
		// transaction of its own: set_config(..., true) lasts until that
		// transaction's commit, which then does not wait for the WAL
		// flush.
		notifyNow: `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1::text, '')`,

		laneCount: sql(`SELECT count(*) FROM {lanes}`),

		// Sent before the statements that read pending records in Seq
		// order, in the same implicit transaction (one pgx batch), so that
		// their plan cannot depend on the table's statistics: with sorts,
		// sequential and bitmap scans disabled, the only plan left without a
		// penalty is an ordered scan of pending_idx that stops at the LIMIT
		// (the table has no other index in Seq order). Hash and merge joins
		// and materialization are disabled too, so that strict order's
		// anti join stays one probe of dead_key_idx per record: with
		// statistics that count few dead letters the planner would
		// otherwise compare every record with a materialized list of all
		// of them, however many there are by now. set_config(..., true)
		// lasts until the end of the transaction, and unlike SET LOCAL it
		// never warns outside an explicit transaction block. JIT is off
		// too: should a plan ever need a disabled node, its penalty must
		// not make the server compile the query. Plans are custom (planned
		// for the arguments of each call, never a cached generic plan):
		// only with its list of skipped IDs a constant does the server test
		// `id <> ALL` with a hash table; a generic plan compares every
		// record with every skipped ID (with 3,000 of them, a Read of 500
		// records took 37 ms instead of 5).
		planGuard: `SELECT set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true),
	set_config('enable_bitmapscan', 'off', true), set_config('enable_hashjoin', 'off', true),
	set_config('enable_mergejoin', 'off', true), set_config('enable_material', 'off', true),
	set_config('jit', 'off', true), set_config('plan_cache_mode', 'force_custom_plan', true)`,

		// SyncLanes: $1 owner, $2 lane IDs and $3 their epochs, $4 lease in
		// microseconds. One batch, one implicit transaction, so now() is the
		// same in every statement.
		relayUpsert: sql(`
INSERT INTO {relays} (owner, lease_until)
VALUES ($1::text, now() + $2::bigint * interval '1 microsecond')
ON CONFLICT (owner) DO UPDATE SET lease_until = EXCLUDED.lease_until`),

		// SKIP LOCKED: relays expiring each other at once never wait (nor
		// deadlock); a row being renewed is not expired anyway.
		relaysExpire: sql(`
DELETE FROM {relays}
WHERE owner IN (SELECT owner FROM {relays} WHERE lease_until <= now() FOR UPDATE SKIP LOCKED)`),

		// Lane rows are always locked in lane order (here, in TakeLanes and
		// in ReleaseLanes), so that those statements never deadlock.
		renewLanes: sql(`
WITH held AS (
	SELECT l.lane FROM {lanes} l
	WHERE ` + heldLanes + ` AND l.owner = $1::text
	ORDER BY l.lane
	FOR NO KEY UPDATE OF l
)
UPDATE {lanes} l SET lease_until = now() + $4::bigint * interval '1 microsecond'
FROM held
WHERE l.lane = held.lane`),

		laneView: sql(`SELECT lane, owner, epoch, lease_until, now() FROM {lanes} ORDER BY lane`),

		// COLLATE "C": byte order, as Go sorts strings.
		liveRelays: sql(`SELECT owner FROM {relays} WHERE lease_until > now() ORDER BY owner COLLATE "C"`),

		// TakeLanes in one statement: $1 owner, $2 lane IDs and $3 the
		// epochs the caller saw, $4 lease in microseconds, $5 how many
		// records to charge. free locks the lanes still at those epochs
		// and free or expired (READ COMMITTED rechecks a row another
		// transaction changed meanwhile); taken bumps their epochs;
		// charged counts an attempt for the first $5 pending records that
		// are due (no not_before, or one that has passed: a record waiting
		// out a retry delay was not in flight), in Seq order, of the lanes
		// whose owner let its lease expire (run
		// after planGuard: the same ordered scan as Read; then found again
		// by id, pending written as in Settle below).
		takeLanes: sql(`
WITH free AS MATERIALIZED (
	SELECT l.lane, l.owner <> '' AS expired
	FROM {lanes} l
	WHERE ` + heldLanes + `
		AND (l.owner = '' OR coalesce(l.lease_until <= now(), true))
	ORDER BY l.lane
	FOR UPDATE OF l
),
taken AS (
	UPDATE {lanes} l
	SET owner = $1::text, epoch = l.epoch + 1, lease_until = now() + $4::bigint * interval '1 microsecond'
	FROM free
	WHERE l.lane = free.lane
	RETURNING l.lane, l.epoch
),
charged AS (
	UPDATE {table} o SET attempts = o.attempts + 1
	WHERE o.id = ANY(ARRAY(
			SELECT p.id FROM {table} p
			WHERE p.delivered_at IS NULL AND p.dead_at IS NULL
				AND p.lane = ANY(ARRAY(SELECT lane FROM free WHERE expired))
				AND (p.not_before IS NULL OR p.not_before <= now())
			ORDER BY p.seq
			LIMIT $5::integer))
		AND coalesce(o.delivered_at, o.dead_at) IS NULL
		AND $5::integer > 0 AND EXISTS (SELECT FROM free WHERE expired)
)
SELECT lane, epoch FROM taken`),

		releaseLanes: sql(`
WITH held AS (
	SELECT l.lane FROM {lanes} l
	WHERE ` + heldLanes + ` AND l.owner = $1::text
	ORDER BY l.lane
	FOR NO KEY UPDATE OF l
)
UPDATE {lanes} l SET owner = '', lease_until = NULL
FROM held
WHERE l.lane = held.lane`),

		leave: sql(`DELETE FROM {relays} WHERE owner = $1::text`),

		// Settle. An outcome applies to a record whose lane row is at the
		// epoch the caller holds it at ($2 lanes, $3 epochs): a relay that
		// lost a lane changes nothing of its records. The fence locks those
		// lane rows first, in lane order, FOR KEY SHARE: a takeover in
		// progress (TakeLanes locks FOR UPDATE) is waited for, and a lane
		// row changed by a takeover committed after the statement's
		// snapshot is read again at its new version, so its epoch no
		// longer matches and its records are left alone; no takeover can
		// commit until the settle does. Heartbeats and releases (FOR NO KEY
		// UPDATE) do not wait for it. The records are found through the
		// primary key on id.
		// "Pending" is written coalesce(delivered_at, dead_at) IS NULL,
		// which the planner cannot match to the predicate of pending_idx:
		// with stale statistics it would otherwise scan that whole index,
		// thinking it small, rather than look the IDs up.
		delivered: sql(`
` + fence + `
UPDATE {table} o SET delivered_at = now()
WHERE o.id = ANY($1::uuid[]) AND coalesce(o.delivered_at, o.dead_at) IS NULL
	AND o.lane = ANY(ARRAY(SELECT lane FROM fence))`),

		// The same, deleting the records (Retain unset): no new row
		// version, no index entry.
		deleteDelivered: sql(`
` + fence + `
DELETE FROM {table} o
WHERE o.id = ANY($1::uuid[]) AND coalesce(o.delivered_at, o.dead_at) IS NULL
	AND o.lane = ANY(ARRAY(SELECT lane FROM fence))`),

		// Retries and dead letters in one statement: $4 errors, $5 delays
		// in microseconds, $6 whether the record is dead.
		failed: sql(`
` + fence + `
UPDATE {table} o
SET attempts = o.attempts + 1,
	last_error = f.error,
	not_before = CASE WHEN f.dead THEN o.not_before ELSE now() + f.delay_us * interval '1 microsecond' END,
	dead_at = CASE WHEN f.dead THEN now() END
FROM unnest($1::uuid[], $4::text[], $5::bigint[], $6::boolean[]) AS f(id, error, delay_us, dead)
WHERE o.id = f.id AND coalesce(o.delivered_at, o.dead_at) IS NULL
	AND o.lane = ANY(ARRAY(SELECT lane FROM fence))`),

		// Tail: records the relay could not publish from the log, in the
		// order given (the identity follows ORDER BY), as pending records
		// with their attempts, error and delay, or as dead letters. An ID
		// already in the table (parked by a relay that died before it
		// confirmed the slot's position) is parked once.
		park: sql(`
INSERT INTO {table} (id, lane, topic, key, payload, headers, created_at, attempts, last_error, not_before, dead_at)
SELECT m.id, m.lane, m.topic, m.key, m.payload, nullif(m.headers, '')::jsonb, m.created_at, m.attempts, m.error,
	CASE WHEN m.delay_us > 0 THEN now() + m.delay_us * interval '1 microsecond' END,
	CASE WHEN m.dead THEN now() END
FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::timestamptz[],
		$8::integer[], $9::text[], $10::bigint[], $11::boolean[])
	WITH ORDINALITY AS m(id, lane, topic, key, payload, headers, created_at, attempts, error, delay_us, dead, ord)
ORDER BY m.ord
ON CONFLICT (id) DO NOTHING`),

		// Tail: the keys whose records from the log must queue behind the
		// table: pending records, and with strict order ($1) dead letters.
		parkedKeys: sql(`
SELECT DISTINCT key FROM {table}
WHERE delivered_at IS NULL AND key <> '' AND (dead_at IS NULL OR $1::boolean)`),

		cleanup: sql(`
DELETE FROM {table}
WHERE id IN (
	SELECT id FROM {table}
	WHERE delivered_at IS NOT NULL AND delivered_at < now() - $1::bigint * interval '1 microsecond'
	ORDER BY delivered_at
	LIMIT $2::integer
	FOR UPDATE SKIP LOCKED)`),

		// Stats: the pending and the dead records, each counted under the
		// predicate of its partial index (pending_idx, dead_idx), so that
		// no retained delivery is read; after statsGuard, in the same
		// implicit transaction, so that stale statistics cannot turn
		// either into a sequential scan of the table.
		statsGuard: `SELECT set_config('enable_seqscan', 'off', true)`,
		stats: sql(`
SELECT p.n, p.retrying, p.replayed, d.n, p.oldest, (SELECT count(*) FROM {lanes})
FROM (
	SELECT count(*) AS n, count(*) FILTER (WHERE attempts > 0) AS retrying,
		count(*) FILTER (WHERE attempts = 0 AND last_error <> '') AS replayed, min(created_at) AS oldest
	FROM {table}
	WHERE delivered_at IS NULL AND dead_at IS NULL
) p, (
	SELECT count(*) AS n
	FROM {table}
	WHERE dead_at IS NOT NULL AND delivered_at IS NULL
) d`),

		// The topics with a backlog: the pending records and the dead
		// letters grouped each under its partial index's predicate, like
		// stats, in the order of outbox.Stats.Topics.
		statsTopics: sql(`
SELECT topic, sum(pending)::bigint, sum(dead)::bigint, min(oldest)
FROM (
	SELECT topic, count(*) AS pending, 0 AS dead, min(created_at) AS oldest
	FROM {table}
	WHERE delivered_at IS NULL AND dead_at IS NULL
	GROUP BY topic
	UNION ALL
	SELECT topic, 0, count(*), NULL
	FROM {table}
	WHERE dead_at IS NOT NULL AND delivered_at IS NULL
	GROUP BY topic
) t
GROUP BY topic
ORDER BY min(oldest) NULLS LAST, sum(dead) DESC, topic COLLATE "C"
LIMIT ` + strconv.Itoa(outbox.MaxStatsTopics)),

		statsRelays: sql(`
SELECT r.owner, count(l.lane), r.lease_until
FROM {relays} r
LEFT JOIN {lanes} l ON l.owner = r.owner AND l.lease_until > now()
WHERE r.lease_until > now()
GROUP BY r.owner, r.lease_until
ORDER BY count(l.lane) DESC, r.owner COLLATE "C"`),

		statsLagging: sql(`
SELECT p.lane, coalesce(l.owner, ''), p.pending, p.oldest
FROM (
	SELECT lane, count(*) AS pending, min(created_at) AS oldest
	FROM {table}
	WHERE delivered_at IS NULL AND dead_at IS NULL
	GROUP BY lane
	ORDER BY oldest, lane
	LIMIT 10
) p
LEFT JOIN {lanes} l ON l.lane = p.lane
ORDER BY p.oldest, p.lane`),

		listDead: sql(`
SELECT ` + recordColumns + `, dead_at
FROM {table}
WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND seq > $1::bigint
	AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))
ORDER BY seq
LIMIT $3::integer`),

		replayDead: sql(`
UPDATE {table}
SET dead_at = NULL, attempts = 0, not_before = NULL
WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::boolean OR id = ANY($2::uuid[]))`),

		purgeDead: sql(`
DELETE FROM {table}
WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::boolean OR id = ANY($2::uuid[]))`),

		// The earliest selected dead letter of each key, then the pending
		// records of that key after it.
		waitingBehindDead: sql(`
SELECT count(*), count(DISTINCT p.key)
FROM (
	SELECT key, min(seq) AS seq FROM {table}
	WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND key <> '' AND ($1::boolean OR id = ANY($2::uuid[]))
	GROUP BY key
) d
JOIN {table} p ON p.key = d.key AND p.seq > d.seq
WHERE p.delivered_at IS NULL AND p.dead_at IS NULL AND p.key <> ''`),

		version: sql(`SELECT coalesce(max(version), 0) FROM {versions}`),
	}
	for skip := range 2 {
		for strict := range 2 {
			st.read[readVariant(skip == 1, strict == 1)] = sql(readSQL(skip == 1, strict == 1))
		}
	}
	return st
}

// readSQL is Read's statement: $1 lanes, $2 and $5 the bounds (both
// excluded) of the ranges of Seq to read, in ascending order, $3 the limit,
// $4 the IDs and $6 the Seqs to skip (possibly empty), and $7 the keys to
// skip when skip is set. Run after planGuard, its plan is a Limit over a
// Nested Loop that takes the ranges in order and, for each, a Limit over
// an Index Scan of pending_idx from the range's start in Seq order, the
// lane, the skipped IDs and Seqs (and skipped keys) tested on each row,
// with strict order one probe of dead_key_idx per record (a Nested Loop
// Anti Join): never a sort of the backlog. The loop yields the ranges'
// records in Seq order and stops at the limit. A record skipped by a
// filter is still fetched from the heap to be tested (pending_idx holds
// only seq); one that lies between two ranges is never visited, which is
// how Read passes over the long runs of records the relay holds.
func readSQL(skip, strict bool) string {
	q := `
SELECT x.* FROM unnest($2::bigint[], $5::bigint[]) AS g(lo, hi)
CROSS JOIN LATERAL (
	SELECT ` + recordColumns + `
	FROM {table} o
	WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
		AND o.lane = ANY($1::integer[]) AND o.seq > g.lo AND o.seq < g.hi
		AND o.id <> ALL($4::uuid[]) AND o.seq <> ALL($6::bigint[])`
	if skip {
		q += `
		AND o.key <> ALL($7::text[])`
	}
	if strict {
		q += `
		AND NOT EXISTS (
			SELECT FROM {table} d
			WHERE d.key = o.key AND d.key <> '' AND d.seq < o.seq
				AND d.dead_at IS NOT NULL AND d.delivered_at IS NULL)`
	}
	return q + `
	ORDER BY o.seq
	LIMIT $3::integer
) x
LIMIT $3::integer`
}

// stripComments drops the lines of s that hold only an SQL comment.
func stripComments(s string) string {
	lines := strings.Split(s, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}
