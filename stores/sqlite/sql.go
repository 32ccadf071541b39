package sqlitestore

import (
	"fmt"
	"regexp"
	"strings"
)

// tableName is what Config.Table accepts: an SQL identifier that needs no
// quoting in any tool, so that operators can type it as it is.
var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func checkTable(name string) error {
	if !tableName.MatchString(name) {
		return fmt.Errorf("Config.Table %q must be 1 to 63 letters, digits or underscores, not starting with a digit", name)
	}
	if strings.HasPrefix(strings.ToLower(name), "sqlite_") {
		return fmt.Errorf("Config.Table %q starts with sqlite_, a prefix SQLite reserves", name)
	}
	return nil
}

// quote returns name as a quoted SQL identifier. Names are validated first;
// quoting keeps keywords such as "order" usable as table names.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// queries holds the store's SQL with the table and index names filled in.
type queries struct {
	replacer *strings.Replacer

	insertRow    string // one row of the multi-row INSERT, without VALUES
	insertPrefix string
	probe        string
	claim        string
	markDone     string
	retry        string
	deadLetter   string
	release      string
	cleanup      string
	stats        string
	statsDead    string
	statsRelays  string
	listDead     string
	listDeadIDs  string
	replayDead   string
	replayAll    string
	purgeDead    string
	purgeAll     string
	waitingAll   string
	waitingIDs   string
}

func newQueries(table string) queries {
	r := strings.NewReplacer(
		"{table}", quote(table),
		"{table_id}", quote(table+"_id"),
		"{table_pending}", quote(table+"_pending"),
		"{table_touched}", quote(table+"_touched"),
		"{table_delivered}", quote(table+"_delivered"),
		"{table_dead}", quote(table+"_dead"),
		"{migrations}", quote(table+"_migrations"),
	)
	q := queries{replacer: r}
	q.insertPrefix = r.Replace(`INSERT INTO {table} (id, topic, key, payload, headers, created_at) VALUES `)
	q.insertRow = `(?, ?, ?, ?, ?, ?)`
	q.probe = r.Replace(candidatesSQL + `SELECT EXISTS (SELECT 1 FROM picked)`)
	q.claim = r.Replace(candidatesSQL + `
UPDATE {table}
SET lease_owner = ?4, lease_until = ?5, available_at = 0, attempts = attempts + 1
WHERE seq IN (SELECT seq FROM picked)
RETURNING seq, id, topic, key, payload, headers, created_at, attempts, last_error`)
	q.markDone = r.Replace(`
UPDATE {table}
SET delivered_at = ?1, dead_at = NULL, lease_owner = NULL, lease_until = 0, available_at = 0
WHERE id IN (SELECT value FROM json_each(?2)) AND delivered_at IS NULL`)
	// Retries and dead letters carry one error (and delay) per record: they
	// come as a JSON array of objects, joined to the table in one UPDATE.
	q.retry = r.Replace(`
UPDATE {table} AS o
SET last_error = r.error, available_at = r.at, lease_owner = NULL, lease_until = 0
FROM (SELECT value ->> 'id' AS id, value ->> 'error' AS error, value ->> 'at' AS at FROM json_each(?2)) AS r
WHERE o.id = r.id AND ` + leasedTo("?3"))
	q.deadLetter = r.Replace(`
UPDATE {table} AS o
SET last_error = r.error, dead_at = ?1, lease_owner = NULL, lease_until = 0, available_at = 0
FROM (SELECT value ->> 'id' AS id, value ->> 'error' AS error FROM json_each(?2)) AS r
WHERE o.id = r.id AND ` + leasedTo("?3"))
	// ?4 is when the records may be claimed again: 0 for at once (claims
	// set available_at to 0), or a time like a retry's.
	q.release = r.Replace(`
UPDATE {table} AS o
SET attempts = max(attempts - 1, 0), lease_owner = NULL, lease_until = 0, available_at = ?4
WHERE id IN (SELECT value FROM json_each(?2)) AND ` + leasedTo("?3"))
	q.cleanup = r.Replace(`
DELETE FROM {table}
WHERE seq IN (
	SELECT seq FROM {table} INDEXED BY {table_delivered}
	WHERE delivered_at IS NOT NULL AND delivered_at < ?1
	ORDER BY delivered_at LIMIT ?2)`)
	q.stats = r.Replace(`
SELECT count(*), coalesce(sum(lease_until > ?1), 0),
	coalesce(sum(last_error IS NOT NULL AND attempts > 0), 0), coalesce(sum(last_error IS NOT NULL AND attempts = 0), 0),
	min(created_at)
FROM {table} INDEXED BY {table_pending}
WHERE delivered_at IS NULL AND dead_at IS NULL`)
	q.statsDead = r.Replace(`SELECT count(*) FROM {table} INDEXED BY {table_dead} WHERE dead_at IS NOT NULL`)
	q.statsRelays = r.Replace(`
SELECT lease_owner, count(*), max(lease_until)
FROM {table} INDEXED BY {table_touched}
WHERE delivered_at IS NULL AND (lease_until > 0 OR available_at > 0 OR dead_at IS NOT NULL)
  AND dead_at IS NULL AND lease_until > ?1
GROUP BY lease_owner
ORDER BY count(*) DESC, lease_owner`)
	const deadColumns = `seq, id, topic, key, payload, headers, created_at, attempts, last_error, dead_at`
	q.listDead = r.Replace(`
SELECT ` + deadColumns + ` FROM {table} INDEXED BY {table_dead}
WHERE dead_at IS NOT NULL AND seq > ?1
ORDER BY seq LIMIT ?2`)
	q.listDeadIDs = r.Replace(`
SELECT ` + deadColumns + ` FROM {table}
WHERE dead_at IS NOT NULL AND seq > ?1 AND id IN (SELECT value FROM json_each(?3))
ORDER BY seq LIMIT ?2`)
	const replaySet = `SET dead_at = NULL, attempts = 0, available_at = 0, lease_owner = NULL, lease_until = 0`
	q.replayDead = r.Replace(`UPDATE {table} ` + replaySet + ` WHERE dead_at IS NOT NULL AND id IN (SELECT value FROM json_each(?1))`)
	q.replayAll = r.Replace(`UPDATE {table} ` + replaySet + ` WHERE dead_at IS NOT NULL`)
	q.purgeDead = r.Replace(`DELETE FROM {table} WHERE dead_at IS NOT NULL AND id IN (SELECT value FROM json_each(?1))`)
	q.purgeAll = r.Replace(`DELETE FROM {table} WHERE dead_at IS NOT NULL`)
	// The earliest selected dead letter of each key, then the pending
	// records of that key after it.
	const waiting = `
SELECT count(*), count(DISTINCT p.key)
FROM (SELECT key, min(seq) AS seq FROM {table} INDEXED BY {table_dead}
	WHERE dead_at IS NOT NULL AND key <> '' %s GROUP BY key) d
JOIN {table} p ON p.key = d.key AND p.seq > d.seq
WHERE p.delivered_at IS NULL AND p.dead_at IS NULL`
	q.waitingAll = r.Replace(fmt.Sprintf(waiting, ""))
	q.waitingIDs = r.Replace(fmt.Sprintf(waiting, "AND id IN (SELECT value FROM json_each(?1))"))
	return q
}

// leasedTo restricts an outcome to records leased to the owner in parameter
// owner whose lease has not expired at ?1, so that a relay that lost its
// lease cannot undo the work of the relay that took the record over.
func leasedTo(owner string) string {
	return `o.lease_owner = ` + owner + ` AND o.lease_until > ?1 AND o.delivered_at IS NULL AND o.dead_at IS NULL`
}

// candidatesSQL defines "picked": the seqs of up to ?3 claimable records at
// time ?1, in Seq order, with ?2 the StrictOrder flag.
//
// A record is claimable when it is deliverable (not delivered, not dead,
// lease absent or expired, retry time reached) and no earlier record of its
// key is blocked: leased, waiting for a retry, or (with StrictOrder) dead.
// Earlier records that are deliverable come first in Seq order, so they are
// handed out in the same result or hold the later ones back by the limit.
//
// The walk reads the pending index (records neither delivered nor dead)
// from the oldest and stops at the limit. What can make a record
// unclaimable, its own lease or retry time or a blocked predecessor, lives
// in the touched index: for a keyed record the look-up covers the key's
// touched records up to and including itself; for an unkeyed one, itself.
// Both indexes are partial, so the cost follows the backlog walked and the
// records in flight, never the delivered history. INDEXED BY makes a plan
// that would read more an error, not a slowdown.
const candidatesSQL = `
WITH picked AS (
	SELECT o.seq FROM {table} AS o INDEXED BY {table_pending}
	WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
	  AND NOT EXISTS (
		SELECT 1 FROM {table} AS e INDEXED BY {table_touched}
		WHERE e.key = o.key AND e.seq <= o.seq AND e.seq >= CASE WHEN o.key = '' THEN o.seq ELSE 0 END
		  AND e.delivered_at IS NULL AND (e.lease_until > 0 OR e.available_at > 0 OR e.dead_at IS NOT NULL)
		  AND CASE WHEN e.dead_at IS NOT NULL THEN ?2 ELSE e.lease_until > ?1 OR e.available_at > ?1 END)
	ORDER BY o.seq LIMIT ?3
)
`
