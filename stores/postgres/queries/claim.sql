-- The claim of pgstore. {table} is the quoted, schema-qualified outbox table.
--
-- Parameters: $1 owner, $2 limit, $3 strict order, $4 lease in microseconds,
-- $5 window (how many of the oldest records to examine), $6 the key after
-- which the walk starts. Every row returned is a record now leased to $1,
-- with the phase that found it (1 window, 2 walk).
--
-- It runs right after pg_advisory_xact_lock(<key of the table>) in the same
-- implicit transaction (one pgx batch): it sees the leases of every earlier
-- claim, and no other claim on this table runs until it commits.
--
-- A record may be handed out when it is deliverable (not delivered, not
-- dead, lease absent or expired, retry time reached) and no earlier
-- undelivered record of its key is a blocker: leased, waiting for its retry,
-- or dead when $3 is set. Records with the empty key block nothing.
--
-- win: the $5 oldest undelivered live records, a prefix of the table in Seq
-- order, so it holds every earlier live record of each key it holds. a: its
-- records that no blocker precedes, oldest first. When the backlog is
-- shallow, that is all.
--
-- When win is full and yields fewer than $2 records it is clogged: keys
-- whose heads are leased or waiting fill it with held-back successors. Then
-- b walks the keys in key order, from $6 to the end and around to $6 (the
-- store moves $6 along from claim to claim, so every key gets its turn).
-- It skips a key that win holds back (stuck) or whose next record is a
-- blocker, in one index probe each, and takes the unblocked prefix of the
-- others, continuing after what a took of them. u takes records without key
-- beyond win. So a claim reads about $5 + $2 records, plus one probe per
-- blocked key, however deep the backlog behind them.
--
-- A successor never comes without its predecessors: within win, ORDER BY seq
-- LIMIT cuts after them; b continues a key only when a took all of its
-- records in win, and takes a prefix; the final ORDER BY seq LIMIT cuts
-- prefixes at their ends. Rows locked by a settle that is committing are
-- skipped, and the UPDATE checks again that each row is still deliverable.
-- The oldest live records; busy ones are leased or waiting for a retry.
WITH RECURSIVE win AS MATERIALIZED (
	SELECT seq, key,
		coalesce(lease_until > now(), false) OR coalesce(available_at > now(), false) AS busy
	FROM {table}
	WHERE delivered_at IS NULL AND dead_at IS NULL
	ORDER BY seq
	LIMIT $5::integer
),
-- Per key, the first busy record in win: it holds back those after it.
held AS (
	SELECT key, min(seq) AS seq FROM win WHERE busy AND key <> '' GROUP BY key
),
-- Phase 1: what win can give, oldest first.
a AS MATERIALIZED (
	SELECT w.seq, w.key, 1 AS phase
	FROM win w LEFT JOIN held h ON h.key = w.key
	WHERE NOT w.busy
		AND (h.seq IS NULL OR w.seq < h.seq)
		AND (NOT $3::boolean OR w.key = '' OR NOT EXISTS (
			SELECT FROM {table} d
			WHERE d.key = w.key AND d.seq < w.seq AND d.dead_at IS NOT NULL AND d.delivered_at IS NULL))
	ORDER BY w.seq
	LIMIT $2::integer
),
-- Phase 2 runs only when win is full and phase 1 fell short.
clogged AS (
	SELECT (SELECT count(*) FROM win) = $5::integer AND (SELECT count(*) FROM a) < $2::integer AS yes
),
-- Per key, the last record phase 1 took: phase 2 may continue after it.
taken AS MATERIALIZED (
	SELECT key, max(seq) AS seq FROM a WHERE key <> '' GROUP BY key
),
-- Keys with a record in win that phase 1 did not take: held back.
stuck AS MATERIALIZED (
	SELECT DISTINCT w.key FROM win w
	WHERE w.key <> '' AND NOT EXISTS (SELECT FROM a WHERE a.seq = w.seq)
),
-- The keys after $6, one index probe each (a loose index scan)...
walk_on(key) AS (
	SELECT (SELECT min(k.key) FROM {table} k
		WHERE k.delivered_at IS NULL AND k.key <> '' AND k.key > $6::text)
	WHERE (SELECT yes FROM clogged)
	UNION ALL
	SELECT (SELECT min(k.key) FROM {table} k
		WHERE k.delivered_at IS NULL AND k.key <> '' AND k.key > w.key)
	FROM walk_on w
	WHERE w.key IS NOT NULL
),
-- ...then from the first key around to $6.
walk_round(key) AS (
	SELECT (SELECT min(k.key) FROM {table} k
		WHERE k.delivered_at IS NULL AND k.key <> '')
	WHERE (SELECT yes FROM clogged) AND $6::text <> ''
	UNION ALL
	SELECT (SELECT min(k.key) FROM {table} k
		WHERE k.delivered_at IS NULL AND k.key <> '' AND k.key > w.key)
	FROM walk_round w
	WHERE w.key < $6::text
),
walk AS (
	SELECT key FROM walk_on WHERE key IS NOT NULL
	UNION ALL
	SELECT key FROM walk_round WHERE key <= $6::text
),
-- Phase 2: the unblocked prefix of each key the walk meets, skipping
-- a key whose next record is a blocker after one probe.
b AS MATERIALIZED (
	SELECT r.seq, w.key, 2 AS phase
	FROM (
		SELECT walk.key, coalesce(taken.seq, 0) AS after
		FROM walk LEFT JOIN taken ON taken.key = walk.key
		WHERE NOT EXISTS (SELECT FROM stuck WHERE stuck.key = walk.key)
	) w
	CROSS JOIN LATERAL (
		SELECT p.seq FROM (
			SELECT p.seq, bool_or(p.dead_at IS NOT NULL
					OR coalesce(p.lease_until > now(), false) OR coalesce(p.available_at > now(), false))
				OVER (ORDER BY p.seq ROWS UNBOUNDED PRECEDING) AS blocked
			FROM {table} p
			WHERE p.key = w.key AND p.key <> '' AND p.seq > w.after
				AND p.delivered_at IS NULL AND (p.dead_at IS NULL OR $3::boolean)
			ORDER BY p.seq
			LIMIT $2::integer
		) p
		WHERE NOT p.blocked
	) r
	WHERE NOT coalesce((
			SELECT f.dead_at IS NOT NULL
				OR coalesce(f.lease_until > now(), false) OR coalesce(f.available_at > now(), false)
			FROM {table} f
			WHERE f.key = w.key AND f.key <> '' AND f.seq > w.after
				AND f.delivered_at IS NULL AND (f.dead_at IS NULL OR $3::boolean)
			ORDER BY f.seq
			LIMIT 1), true)
	LIMIT $2::integer
),
-- Phase 2 for records without key, beyond win.
u AS MATERIALIZED (
	SELECT seq, key, 2 AS phase
	FROM {table}
	WHERE key = '' AND delivered_at IS NULL AND dead_at IS NULL
		AND (lease_until IS NULL OR lease_until <= now())
		AND (available_at IS NULL OR available_at <= now())
		AND seq > (SELECT max(seq) FROM win)
		AND (SELECT yes FROM clogged)
	ORDER BY seq
	LIMIT $2::integer
),
-- Phase 1, then phase 2 oldest first, up to $2 in all.
picked AS (
	SELECT seq, key, phase FROM a
	UNION ALL
	(SELECT seq, key, phase FROM (SELECT * FROM b UNION ALL SELECT * FROM u) bu
	ORDER BY seq
	LIMIT greatest($2::integer - (SELECT count(*) FROM a), 0))
),
-- Skip rows that a committing settle holds.
locked AS MATERIALIZED (
	SELECT o.seq, picked.phase
	FROM {table} o JOIN picked ON o.seq = picked.seq
	FOR UPDATE OF o SKIP LOCKED
)
-- Lease, count the attempt, and check once more on the current row.
UPDATE {table} o
SET lease_owner = $1::text,
	lease_until = now() + $4::bigint * interval '1 microsecond',
	attempts = o.attempts + 1
FROM locked
WHERE o.seq = locked.seq
	AND o.delivered_at IS NULL AND o.dead_at IS NULL
	AND (o.lease_until IS NULL OR o.lease_until <= now())
	AND (o.available_at IS NULL OR o.available_at <= now())
RETURNING o.seq, o.id, o.topic, o.key, o.payload, o.headers, o.created_at, o.attempts, o.last_error, locked.phase
