package pgstore

import (
	_ "embed"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// names are the identifiers a store uses, derived from its Config once.
type names struct {
	schema   string // as configured, unquoted
	table    string // as configured, unquoted
	qualTab  string // "schema"."table"
	qualVer  string // "schema"."table_migrations"
	channel  string // NOTIFY channel, unquoted
	claimKey int64  // advisory lock that serializes claims on this table
	migrKey  int64  // advisory lock that serializes migrations in this schema
}

// maxChannelLen is the longest NOTIFY channel name PostgreSQL accepts.
const maxChannelLen = 63

func newNames(schema, table string) names {
	n := names{
		schema:   schema,
		table:    table,
		qualTab:  pgx.Identifier{schema, table}.Sanitize(),
		qualVer:  pgx.Identifier{schema, table + "_migrations"}.Sanitize(),
		channel:  channelName(schema, table),
		claimKey: lockKey("txoutbox claim " + schema + "." + table),
		migrKey:  lockKey("txoutbox migrate " + schema),
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
	insertOne, insertMany, notify string

	readCommitted, lockClaims, claim string

	markDelivered, scheduleRetry, deadLetter, release string

	cleanup, stats, statsRelays string

	listDead, replayDead, purgeDead, waitingBehindDead string

	version string
}

// claimSQL is the claim, with its explanation in SQL comments, which are
// dropped before it is sent.
//
//go:embed queries/claim.sql
var claimSQL string

// recordColumns are the columns read into an outbox.Record, in scan order.
const recordColumns = "seq, id, topic, key, payload, headers, created_at, attempts, last_error"

func newStatements(n names) statements {
	r := strings.NewReplacer("{table}", n.qualTab, "{versions}", n.qualVer)
	sql := func(s string) string { return strings.TrimSpace(r.Replace(stripComments(s))) }
	return statements{
		// The enqueue statements, one for a message and one for many, are
		// what both Enqueue (pgx) and EnqueueSQL (database/sql) send, as one
		// statement: the INSERT runs in a data-modifying CTE, and the same
		// statement queues the NOTIFY (delivered on commit), unless $7, the
		// channel, is empty (Config.DisableNotify).
		insertOne: sql(`
WITH inserted AS (
	INSERT INTO {table} (id, topic, key, payload, headers, created_at)
	VALUES ($1::uuid, $2::text, $3::text, $4::bytea, nullif($5::text, '')::jsonb, $6::timestamptz))
SELECT pg_notify($7::text, '') WHERE $7::text <> ''`),

		// WITH ORDINALITY and ORDER BY make the identity column number the
		// messages in the order of the slice given to Enqueue.
		insertMany: sql(`
WITH inserted AS (
	INSERT INTO {table} (id, topic, key, payload, headers, created_at)
	SELECT m.id, m.topic, m.key, m.payload, nullif(m.headers, '')::jsonb, m.created_at
	FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::timestamptz[])
		WITH ORDINALITY AS m(id, topic, key, payload, headers, created_at, ord)
	ORDER BY m.ord)
SELECT pg_notify($7::text, '') WHERE $7::text <> ''`),

		notify: `SELECT pg_notify($1::text, '')`,

		readCommitted: `SET TRANSACTION ISOLATION LEVEL READ COMMITTED`,
		lockClaims:    `SELECT pg_advisory_xact_lock($1::bigint)`,

		// The claim: see queries/claim.sql.
		claim: sql(claimSQL),

		markDelivered: sql(`
UPDATE {table}
SET delivered_at = now(), dead_at = NULL, lease_owner = NULL, lease_until = NULL
WHERE id = ANY($1::uuid[]) AND delivered_at IS NULL`),

		scheduleRetry: sql(`
UPDATE {table} o
SET last_error = r.error,
	available_at = now() + r.delay_us * interval '1 microsecond',
	lease_owner = NULL, lease_until = NULL
FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS r(id, error, delay_us)
WHERE o.id = r.id AND o.lease_owner = $1::text AND o.lease_until > now()
	AND o.delivered_at IS NULL AND o.dead_at IS NULL`),

		deadLetter: sql(`
UPDATE {table} o
SET last_error = r.error, dead_at = now(), lease_owner = NULL, lease_until = NULL
FROM unnest($2::uuid[], $3::text[]) AS r(id, error)
WHERE o.id = r.id AND o.lease_owner = $1::text AND o.lease_until > now()
	AND o.delivered_at IS NULL AND o.dead_at IS NULL`),

		// A positive delay makes the records wait like a retry does; zero
		// leaves available_at as it is (in the past: they were claimed).
		release: sql(`
UPDATE {table}
SET lease_owner = NULL, lease_until = NULL, attempts = greatest(attempts - 1, 0),
	available_at = CASE WHEN $3::bigint > 0 THEN now() + $3::bigint * interval '1 microsecond' ELSE available_at END
WHERE id = ANY($2::uuid[]) AND lease_owner = $1::text AND lease_until > now()
	AND delivered_at IS NULL AND dead_at IS NULL`),

		cleanup: sql(`
DELETE FROM {table}
WHERE seq IN (
	SELECT seq FROM {table}
	WHERE delivered_at IS NOT NULL AND delivered_at < now() - $1::bigint * interval '1 microsecond'
	ORDER BY delivered_at
	LIMIT $2::integer
	FOR UPDATE SKIP LOCKED)`),

		stats: sql(`
SELECT count(*) FILTER (WHERE dead_at IS NULL),
	count(*) FILTER (WHERE dead_at IS NULL AND lease_until > now()),
	count(*) FILTER (WHERE dead_at IS NULL AND last_error <> '' AND attempts > 0),
	count(*) FILTER (WHERE dead_at IS NULL AND last_error <> '' AND attempts = 0),
	count(*) FILTER (WHERE dead_at IS NOT NULL),
	min(created_at) FILTER (WHERE dead_at IS NULL)
FROM {table}
WHERE delivered_at IS NULL`),

		statsRelays: sql(`
SELECT lease_owner, count(*), max(lease_until)
FROM {table}
WHERE delivered_at IS NULL AND dead_at IS NULL AND lease_until > now()
GROUP BY lease_owner
ORDER BY count(*) DESC, lease_owner`),

		listDead: sql(`
SELECT ` + recordColumns + `, dead_at
FROM {table}
WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND seq > $1::bigint
	AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))
ORDER BY seq
LIMIT $3::integer`),

		replayDead: sql(`
UPDATE {table}
SET dead_at = NULL, attempts = 0, available_at = NULL
WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::boolean OR id = ANY($2::uuid[]))`),

		purgeDead: sql(`
DELETE FROM {table}
WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::boolean OR id = ANY($2::uuid[]))`),

		// The earliest selected dead letter of each key, then the live
		// records of that key after it (both through the key indexes).
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
