-- The outbox. {outbox}, {lanes} and {relays} are replaced by the quoted
-- table names. All times are UTC.
--
-- lane is the record's lane (outbox.LaneOf of its key), computed by Enqueue.
-- not_before, when set, is the end of the backoff of its last failed attempt.
--
-- state (0 pending, 1 dead letter, 2 delivered) and dead_key (the key of a
-- dead letter, NULL otherwise and for records without a key) follow from
-- delivered_at and dead_at: the server keeps them, nobody writes them.
-- MySQL has no partial index; state leads state_order instead, so delivered
-- records sit in their own part of it and cost a Read nothing however many
-- are kept.
CREATE TABLE IF NOT EXISTS {outbox} (
  seq          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  id           CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  lane         INT NOT NULL,
  topic        VARCHAR(249) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  msg_key      VARBINARY(255) NOT NULL,
  payload      LONGBLOB NOT NULL,
  headers      JSON NULL,
  created_at   DATETIME(6) NOT NULL,
  attempts     INT NOT NULL DEFAULT 0,
  last_error   TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  not_before   DATETIME(6) NULL,
  delivered_at DATETIME(6) NULL,
  dead_at      DATETIME(6) NULL,
  state        TINYINT AS (CASE WHEN delivered_at IS NOT NULL THEN 2 WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END) STORED,
  dead_key     VARBINARY(255) AS (CASE WHEN dead_at IS NOT NULL AND delivered_at IS NULL AND msg_key <> '' THEN msg_key END) STORED,
  PRIMARY KEY (seq),
  -- Settles find their records by ID.
  UNIQUE KEY by_id (id),
  -- Read: pending records (state 0) in seq order, the lane filtered in the
  -- index; ListDead: dead letters (state 1) in seq order; Cleanup:
  -- retained deliveries (state 2) in seq order.
  KEY state_order (state, seq, lane),
  -- Strict order: the dead letters of a key, in seq order. Every other
  -- record has NULL here, so a write appends to the NULL part.
  KEY dead_keys (dead_key, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per lane, 0 to the lane count minus one, inserted by Migrate.
-- owner is '' while the lane is free (lease_until is NULL then); epoch grows
-- whenever the lane changes hands and fences settles. TakeLanes is one
-- UPDATE: it marks the rows it takes with a token of its own (take_token)
-- and whether their previous owner let its lease expire (take_expired), and
-- then reads them back by that token, so that no lock outlives a statement.
CREATE TABLE IF NOT EXISTS {lanes} (
  lane         INT NOT NULL,
  owner        VARBINARY(255) NOT NULL DEFAULT '',
  epoch        BIGINT NOT NULL DEFAULT 0,
  lease_until  DATETIME(6) NULL,
  take_token   BIGINT NOT NULL DEFAULT 0,
  take_expired BOOLEAN NOT NULL DEFAULT FALSE,
  PRIMARY KEY (lane)
) ENGINE=InnoDB;

-- The live relays, each until the end of its last heartbeat's lease.
CREATE TABLE IF NOT EXISTS {relays} (
  owner       VARBINARY(255) NOT NULL,
  lease_until DATETIME(6) NOT NULL,
  PRIMARY KEY (owner)
) ENGINE=InnoDB;
