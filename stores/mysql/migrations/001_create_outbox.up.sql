-- The outbox. {outbox} and {lock} are replaced by the quoted table names.
--
-- state is 0 for a pending record, 1 for a dead letter, 2 once delivered.
-- It leads every index the relay reads, so delivered records sit in their
-- own part of each index and cost a claim nothing however many are kept.
-- (It is a plain column that the store keeps in step with delivered_at
-- and dead_at: MariaDB does not use an index on a generated column for the
-- loose index scan the claim needs.) available_at is when a pending record
-- may be claimed: 1970 for a new or released record, the lease expiry
-- while it is leased, the retry time after a failure. All times are UTC.
CREATE TABLE IF NOT EXISTS {outbox} (
  seq          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  id           CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  topic        VARCHAR(249) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  msg_key      VARBINARY(255) NOT NULL,
  -- msg_key until the record is delivered, then NULL: delivered records
  -- gather at the end of key_order instead of among the pending ones.
  order_key    VARBINARY(255) NULL,
  payload      LONGBLOB NOT NULL,
  headers      JSON NULL,
  created_at   DATETIME(6) NOT NULL,
  attempts     INT NOT NULL DEFAULT 0,
  last_error   TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  lease_owner  VARBINARY(255) NULL,
  available_at DATETIME(6) NOT NULL DEFAULT '1970-01-01 00:00:00',
  delivered_at DATETIME(6) NULL,
  dead_at      DATETIME(6) NULL,
  state        TINYINT NOT NULL DEFAULT 0,
  PRIMARY KEY (seq),
  UNIQUE KEY by_id (id),
  -- The claim walks available records in seq order, index only.
  KEY claim_order (state, seq, available_at, msg_key),
  -- Records that hold back their key: pending and not claimable now
  -- (leased or waiting for a retry), and dead ones in strict order.
  KEY blocked (state, available_at, msg_key),
  -- The first pending record of each key (a loose index scan), and the
  -- records of one key in order.
  KEY key_order (state, order_key, seq, available_at),
  -- Cleanup deletes the oldest deliveries first.
  KEY cleanup (state, delivered_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row that claimers lock, so that claims on one outbox run one at a
-- time and each sees the leases of the claims before it.
CREATE TABLE IF NOT EXISTS {lock} (
  id      TINYINT UNSIGNED NOT NULL,
  purpose VARCHAR(64) NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO {lock} (id, purpose) VALUES (1, 'claim');
