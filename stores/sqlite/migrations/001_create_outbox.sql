-- The outbox table, its lanes and relays, and their indexes. Placeholders in
-- braces are replaced with quoted identifiers derived from Config.Table
-- before the script runs. Migrate fills {lanes} with one row per lane after
-- the script, in the same transaction.
--
-- Times are INTEGER microseconds since the Unix epoch, so they round-trip
-- exactly.
CREATE TABLE {table} (
    seq          INTEGER PRIMARY KEY,               -- write order (the rowid)
    id           TEXT    NOT NULL,                  -- UUID, lowercase
    topic        TEXT    NOT NULL,
    key          TEXT    NOT NULL DEFAULT '',       -- '' = unordered
    lane         INTEGER NOT NULL,                  -- outbox.LaneOf(key, id, lane count)
    payload      BLOB    NOT NULL,
    headers      TEXT,                              -- JSON object, NULL when none
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    not_before   INTEGER,                           -- end of the last failure's backoff; NULL = due now
    delivered_at INTEGER,
    dead_at      INTEGER
) STRICT;

CREATE UNIQUE INDEX {table_id} ON {table} (id);

-- Records waiting for delivery (not delivered, not dead) in write order,
-- with their lane: a relay reads its lanes by walking it from its cursor
-- and skipping the other lanes' entries in the index, without touching
-- their rows, and stops at the batch limit. Its columns never change while
-- a record waits, so retries do not rewrite it; delivered records, however
-- many are kept, are not in it.
CREATE INDEX {table_pending} ON {table} (seq, lane) WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Dead letters by key, for StrictOrder: "is there an earlier dead letter of
-- this key?" is one probe.
CREATE INDEX {table_dead_key} ON {table} (key, seq) WHERE dead_at IS NOT NULL;

-- Dead letters in write order, for listing.
CREATE INDEX {table_dead} ON {table} (seq) WHERE dead_at IS NOT NULL;

-- Delivered records by age, for bounded cleanup.
CREATE INDEX {table_delivered} ON {table} (delivered_at) WHERE delivered_at IS NOT NULL;

-- One row per lane, 0 to the lane count minus one. owner is '' and
-- lease_until NULL while the lane is free; epoch grows by one whenever the
-- lane changes hands, and fences the outcomes of its records.
CREATE TABLE {lanes} (
    lane        INTEGER PRIMARY KEY,
    owner       TEXT    NOT NULL DEFAULT '',
    epoch       INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER
) STRICT;

-- Live relays: each renews its row with its lanes' leases.
CREATE TABLE {relays} (
    owner       TEXT    PRIMARY KEY,
    lease_until INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
