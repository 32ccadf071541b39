-- The outbox table and its indexes. Placeholders in braces are replaced with
-- quoted identifiers derived from Config.Table before the script runs.
--
-- Times are INTEGER microseconds since the Unix epoch, so they round-trip
-- exactly. lease_until and available_at are 0 when unset, which keeps the
-- claim's range checks free of NULL handling.
CREATE TABLE {table} (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT, -- write order; never reused
    id           TEXT    NOT NULL,                  -- UUID, lowercase
    topic        TEXT    NOT NULL,
    key          TEXT    NOT NULL DEFAULT '',       -- '' = unordered
    payload      BLOB    NOT NULL,
    headers      TEXT,                              -- JSON object, NULL when none
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,        -- claims, counted at claim time
    last_error   TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL DEFAULT 0,        -- retry time
    delivered_at INTEGER,
    dead_at      INTEGER
) STRICT;

CREATE UNIQUE INDEX {table_id} ON {table} (id);

-- Records waiting for delivery (not delivered, not dead) in write order.
-- The claim walks it from the oldest, so delivered records, however many
-- are kept, cost nothing. Its columns never change while a record waits, so
-- leasing and releasing do not rewrite it, and they are all the claim's
-- walk reads (delivered_at and dead_at, NULL in every entry, are there for
-- the planner to see that).
CREATE INDEX {table_pending} ON {table} (seq, key, delivered_at, dead_at) WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Undelivered records that a relay has touched: leased (or whose lease
-- expired unreleased), waiting for a retry, or dead. Only these can hold a
-- key back, and there are few of them, so the claim looks for what blocks a
-- record here, not in the backlog. Its columns cover that look-up
-- (delivered_at, NULL in every entry, is there for that too).
CREATE INDEX {table_touched} ON {table} (key, seq, lease_until, available_at, dead_at, delivered_at)
    WHERE delivered_at IS NULL AND (lease_until > 0 OR available_at > 0 OR dead_at IS NOT NULL);

-- Delivered records by age, for bounded cleanup.
CREATE INDEX {table_delivered} ON {table} (delivered_at) WHERE delivered_at IS NOT NULL;

-- Dead letters in write order.
CREATE INDEX {table_dead} ON {table} (seq) WHERE dead_at IS NOT NULL;
