package sqlitestore

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
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
	laneCount    string
	fillLanes    string

	syncRelay   string
	syncLanes   string
	dropRelays  string
	viewLanes   string
	viewRelays  string
	takeable    string
	take        string
	charge      string
	releaseLane string
	leave       string
	read        string
	readStrict  string
	delivered   string
	deliver     string
	retry       string
	deadLetter  string

	cleanup      string
	statsPending string
	statsDead    string
	statsTopics  string
	statsRelays  string
	statsLanes   string
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
		"{lanes}", quote(table+"_lanes"),
		"{relays}", quote(table+"_relays"),
		"{table_id}", quote(table+"_id"),
		"{table_pending}", quote(table+"_pending"),
		"{table_dead_key}", quote(table+"_dead_key"),
		"{table_dead}", quote(table+"_dead"),
		"{table_delivered}", quote(table+"_delivered"),
		"{migrations}", quote(table+"_migrations"),
	)
	q := queries{replacer: r}
	q.insertPrefix = r.Replace(`INSERT INTO {table} (id, topic, key, lane, payload, headers, created_at) VALUES `)
	q.insertRow = `(?, ?, ?, ?, ?, ?, ?)`
	q.laneCount = r.Replace(`SELECT count(*) FROM {lanes}`)
	q.fillLanes = r.Replace(`
INSERT INTO {lanes} (lane)
SELECT i FROM (WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1) SELECT i FROM n)
WHERE NOT EXISTS (SELECT 1 FROM {lanes})`)

	// Lanes travel as one JSON parameter, an array of [id, epoch] pairs:
	// heldLanes joins it to the lanes table.
	const heldLanes = `SELECT l.lane FROM {lanes} AS l, json_each(?%d) AS h
		WHERE l.lane = h.value ->> 0 AND l.epoch = h.value ->> 1`
	held := func(param int) string { return fmt.Sprintf(heldLanes, param) }

	q.syncRelay = r.Replace(`
INSERT INTO {relays} (owner, lease_until) VALUES (?1, ?2)
ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until`)
	q.syncLanes = r.Replace(`
UPDATE {lanes} SET lease_until = ?2
WHERE owner = ?1 AND lane IN (` + held(3) + `)`)
	q.dropRelays = r.Replace(`DELETE FROM {relays} WHERE lease_until <= ?1`)
	q.viewLanes = r.Replace(`SELECT lane, epoch, owner, lease_until FROM {lanes} ORDER BY lane`)
	q.viewRelays = r.Replace(`SELECT owner FROM {relays} WHERE lease_until > ?1 ORDER BY owner`)
	// takeable: of the lanes ?2 at their epochs, those free or expired at
	// ?1, with their owner ('' when free).
	q.takeable = r.Replace(`
SELECT l.lane, l.owner FROM {lanes} AS l, json_each(?2) AS h
WHERE l.lane = h.value ->> 0 AND l.epoch = h.value ->> 1
  AND (l.owner = '' OR l.lease_until IS NULL OR l.lease_until <= ?1)`)
	q.take = r.Replace(`
UPDATE {lanes} SET owner = ?1, epoch = epoch + 1, lease_until = ?2
WHERE lane IN (SELECT value FROM json_each(?3))
RETURNING lane, epoch`)
	q.charge = r.Replace(`
UPDATE {table} SET attempts = attempts + 1
WHERE seq IN (
	SELECT seq FROM {table} INDEXED BY {table_pending}
	WHERE delivered_at IS NULL AND dead_at IS NULL AND lane IN (SELECT value FROM json_each(?1))
	  AND (not_before IS NULL OR not_before <= ?3)
	ORDER BY seq LIMIT ?2)`)
	q.releaseLane = r.Replace(`
UPDATE {lanes} SET owner = '', lease_until = NULL
WHERE owner = ?1 AND lane IN (` + held(2) + `)`)
	q.leave = r.Replace(`DELETE FROM {relays} WHERE owner = ?1`)

	q.read = r.Replace(fmt.Sprintf(readSQL, ""))
	q.readStrict = r.Replace(fmt.Sprintf(readSQL, `
  AND (o.key = '' OR NOT EXISTS (
	SELECT 1 FROM {table} AS d INDEXED BY {table_dead_key}
	WHERE d.key = o.key AND d.seq < o.seq AND d.dead_at IS NOT NULL))`))

	// Outcomes apply to pending records of the lanes held at the epochs of
	// ?3: the lane IN (...) is a semi-join with the lanes table, evaluated
	// once per statement.
	const fenced = ` AND o.delivered_at IS NULL AND o.dead_at IS NULL AND o.lane IN (` + heldLanes + `)`
	// delivered marks the records delivered (SettleParams.Retain); deliver
	// deletes them, with the same fence (and no time: ?1 is the IDs).
	q.delivered = r.Replace(`
UPDATE {table} AS o SET delivered_at = ?1
WHERE o.id IN (SELECT value FROM json_each(?2))` + fmt.Sprintf(fenced, 3))
	q.deliver = r.Replace(`
DELETE FROM {table} AS o
WHERE o.id IN (SELECT value FROM json_each(?1))` + fmt.Sprintf(fenced, 2))
	// Retries and dead letters carry one error (and delay) per record: they
	// come as a JSON array of objects, joined to the table in one UPDATE.
	q.retry = r.Replace(`
UPDATE {table} AS o
SET attempts = o.attempts + 1, last_error = f.error, not_before = ?1 + f.delay
FROM (SELECT value ->> 'id' AS id, value ->> 'error' AS error, value ->> 'delay' AS delay FROM json_each(?2)) AS f
WHERE o.id = f.id` + fmt.Sprintf(fenced, 3))
	q.deadLetter = r.Replace(`
UPDATE {table} AS o
SET attempts = o.attempts + 1, last_error = f.error, dead_at = ?1
FROM (SELECT value ->> 'id' AS id, value ->> 'error' AS error FROM json_each(?2)) AS f
WHERE o.id = f.id` + fmt.Sprintf(fenced, 3))

	q.cleanup = r.Replace(`
DELETE FROM {table}
WHERE seq IN (
	SELECT seq FROM {table} INDEXED BY {table_delivered}
	WHERE delivered_at IS NOT NULL AND delivered_at < ?1
	ORDER BY delivered_at LIMIT ?2)`)
	q.statsPending = r.Replace(`
SELECT lane, count(*), sum(attempts > 0), sum(attempts = 0 AND coalesce(last_error, '') <> ''), min(created_at)
FROM {table} INDEXED BY {table_pending}
WHERE delivered_at IS NULL AND dead_at IS NULL
GROUP BY lane`)
	q.statsDead = r.Replace(`SELECT count(*) FROM {table} INDEXED BY {table_dead} WHERE dead_at IS NOT NULL`)
	// The topics with a backlog, the pending records and the dead letters
	// each grouped through its partial index, in the order of
	// outbox.Stats.Topics.
	q.statsTopics = r.Replace(`
SELECT topic, sum(pending), sum(dead), min(oldest)
FROM (
	SELECT topic, count(*) AS pending, 0 AS dead, min(created_at) AS oldest
	FROM {table} INDEXED BY {table_pending}
	WHERE delivered_at IS NULL AND dead_at IS NULL
	GROUP BY topic
	UNION ALL
	SELECT topic, 0, count(*), NULL
	FROM {table} INDEXED BY {table_dead}
	WHERE dead_at IS NOT NULL
	GROUP BY topic
)
GROUP BY topic
ORDER BY min(oldest) IS NULL, min(oldest), sum(dead) DESC, topic
LIMIT ` + strconv.Itoa(outbox.MaxStatsTopics))
	// The lanes are counted by owner in one pass, then joined to the live
	// relays.
	q.statsRelays = r.Replace(`
SELECT r.owner, r.lease_until, coalesce(l.held, 0) AS held
FROM {relays} AS r
LEFT JOIN (SELECT owner, count(*) AS held FROM {lanes} WHERE lease_until > ?1 GROUP BY owner) AS l ON l.owner = r.owner
WHERE r.lease_until > ?1
ORDER BY held DESC, r.owner`)
	q.statsLanes = r.Replace(`SELECT lane, owner FROM {lanes} ORDER BY lane`)
	const deadColumns = `seq, id, topic, key, lane, payload, headers, created_at, attempts, last_error, not_before, dead_at`
	q.listDead = r.Replace(`
SELECT ` + deadColumns + ` FROM {table} INDEXED BY {table_dead}
WHERE dead_at IS NOT NULL AND seq > ?1
ORDER BY seq LIMIT ?2`)
	q.listDeadIDs = r.Replace(`
SELECT ` + deadColumns + ` FROM {table}
WHERE dead_at IS NOT NULL AND seq > ?1 AND id IN (SELECT value FROM json_each(?3))
ORDER BY seq LIMIT ?2`)
	const replaySet = `SET dead_at = NULL, attempts = 0, not_before = NULL`
	q.replayDead = r.Replace(`UPDATE {table} ` + replaySet + ` WHERE dead_at IS NOT NULL AND id IN (SELECT value FROM json_each(?1))`)
	q.replayAll = r.Replace(`UPDATE {table} ` + replaySet + ` WHERE dead_at IS NOT NULL`)
	q.purgeDead = r.Replace(`DELETE FROM {table} WHERE dead_at IS NOT NULL AND id IN (SELECT value FROM json_each(?1))`)
	q.purgeAll = r.Replace(`DELETE FROM {table} WHERE dead_at IS NOT NULL`)
	// The earliest selected dead letter of each key, then the pending
	// records of that key after it.
	const waiting = `
SELECT count(*), count(DISTINCT p.key)
FROM (SELECT key, min(seq) AS seq FROM {table} INDEXED BY {table_dead_key}
	WHERE dead_at IS NOT NULL AND key <> '' %s GROUP BY key) d
JOIN {table} p ON p.key = d.key AND p.seq > d.seq
WHERE p.delivered_at IS NULL AND p.dead_at IS NULL`
	q.waitingAll = r.Replace(fmt.Sprintf(waiting, ""))
	q.waitingIDs = r.Replace(fmt.Sprintf(waiting, "AND id IN (SELECT value FROM json_each(?1))"))
	return q
}

// readSQL reads up to ?4 pending records of the lanes ?1 (a JSON array)
// with a Seq above ?2, leaving out the IDs of ?5, the Seqs of ?6 and the
// keys of ?3 (JSON arrays); %s adds the StrictOrder condition.
//
// It walks the pending index from ?2 in Seq order, so it sorts nothing and
// stops at the limit; the lane and Seq filters read the index entry alone
// (the Seq is the rowid), and only the records of the lanes read cost a
// row look-up: those returned, and those left out by ID or key. A record
// whose Seq is not in ?6 is known not to be held without a look-up; one
// whose Seq is in ?6 is left out only if its ID is in ?5 too: a Seq is the
// rowid, which SQLite gives again to the next record written once the
// record with the largest rowid is deleted (Settle deletes what it
// delivers), so a Seq the relay still lists (settled while the read began,
// or of a lane it lost) may name a record it does not hold, which must not
// be left out (TestAttackSkipSeqsReusedRowid). With ?6 empty, ?5 alone
// decides. Each list is read into a temporary index once per
// statement, not per row. INDEXED BY fixes the plan whatever the table statistics
// say: with statistics gathered on an empty table, SQLite would otherwise
// be free to walk the whole table by rowid.
const readSQL = `
SELECT o.seq, o.id, o.topic, o.key, o.lane, o.payload, o.headers, o.created_at, o.attempts, o.last_error, o.not_before
FROM {table} AS o INDEXED BY {table_pending}
WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.seq > ?2
  AND o.lane IN (SELECT value FROM json_each(?1))
  AND (o.seq NOT IN (SELECT value FROM json_each(?6)) AND ?6 <> '[]'
    OR o.id NOT IN (SELECT value FROM json_each(?5)))
  AND (o.key = '' OR o.key NOT IN (SELECT value FROM json_each(?3)))%s
ORDER BY o.seq LIMIT ?4`
