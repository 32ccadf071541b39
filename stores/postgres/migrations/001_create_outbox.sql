-- The outbox table, its lanes and relays, and their indexes.
--
-- Every record lives in the outbox table from Enqueue to Cleanup, updated in
-- place when it is settled. Its lane (the hash of its key modulo the lane
-- count, computed by Enqueue) tells which relay reads it: relays lease
-- lanes, rows of {{.Lanes}}, and fence their writes by the lane's epoch.
-- The indexes relays read are partial, so a Read never touches a delivered
-- record however many are kept. Retries change no indexed column, so with
-- room left on each page (fillfactor) PostgreSQL updates those rows in place
-- (HOT) without touching any index. Every row is updated about once and
-- then deleted, so autovacuum is told to visit the table after a smaller
-- share of it changed than the default 20%.
CREATE TABLE {{.Table}} (
	seq          bigint      GENERATED ALWAYS AS IDENTITY,
	id           uuid        NOT NULL,
	lane         integer     NOT NULL,
	topic        text        NOT NULL,
	key          text        NOT NULL DEFAULT '',
	payload      bytea       NOT NULL,
	headers      jsonb,
	created_at   timestamptz NOT NULL,
	attempts     integer     NOT NULL DEFAULT 0,
	last_error   text        NOT NULL DEFAULT '',
	not_before   timestamptz,
	delivered_at timestamptz,
	dead_at      timestamptz,
	CONSTRAINT {{.Name "pkey"}} PRIMARY KEY (id)
) WITH (
	fillfactor = 80,
	autovacuum_vacuum_scale_factor = 0.02,
	autovacuum_vacuum_insert_scale_factor = 0.02,
	autovacuum_analyze_scale_factor = 0.02
);

-- Read (and the charge of TakeLanes): pending records in Seq order, their
-- lane tested on each row. It is the only index of live records in Seq
-- order (seq is unique by its identity, not by an index), so Read's plan,
-- with sorts and sequential scans disabled, has no other choice.
CREATE INDEX {{.Name "pending_idx"}} ON {{.Table}} (seq)
	WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Strict order: is there a dead letter before this record of its key?
CREATE INDEX {{.Name "dead_key_idx"}} ON {{.Table}} (key, seq)
	WHERE dead_at IS NOT NULL AND delivered_at IS NULL;

-- Dead letters in Seq order, for listing and replay.
CREATE INDEX {{.Name "dead_idx"}} ON {{.Table}} (seq)
	WHERE dead_at IS NOT NULL AND delivered_at IS NULL;

-- Cleanup: the oldest deliveries first.
CREATE INDEX {{.Name "delivered_idx"}} ON {{.Table}} (delivered_at)
	WHERE delivered_at IS NOT NULL;

-- One row per lane, 0 to the lane count minus one, inserted by Migrate.
-- The lane is held by owner ('' when free) until lease_until; epoch
-- changes whenever the lane changes hands, and settles apply only at the
-- epoch their relay holds.
CREATE TABLE {{.Lanes}} (
	lane        integer     NOT NULL,
	owner       text        NOT NULL DEFAULT '',
	epoch       bigint      NOT NULL DEFAULT 0,
	lease_until timestamptz,
	CONSTRAINT {{.Name "lanes_pkey"}} PRIMARY KEY (lane)
) WITH (fillfactor = 50);

-- The live relays, each until the end of its last heartbeat's lease.
CREATE TABLE {{.Relays}} (
	owner       text        NOT NULL,
	lease_until timestamptz NOT NULL,
	CONSTRAINT {{.Name "relays_pkey"}} PRIMARY KEY (owner)
);
