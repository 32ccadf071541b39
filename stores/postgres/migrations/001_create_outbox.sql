-- The outbox table and its indexes.
--
-- Every record lives in this one table from Enqueue to Cleanup: claimed and
-- settled records are updated in place. The indexes that claims use are
-- partial (WHERE delivered_at IS NULL), so a claim reads only undelivered
-- records however many delivered ones are kept. Claims, retries and
-- releases change no indexed column, so with room left on each page
-- (fillfactor) PostgreSQL updates those rows in place (HOT) without
-- touching any index. Every row is updated about twice and then deleted, so
-- autovacuum is told to visit the table after a smaller share of it
-- changed than the default 20%.
CREATE TABLE {{.Table}} (
	seq          bigint      GENERATED ALWAYS AS IDENTITY,
	id           uuid        NOT NULL,
	topic        text        NOT NULL,
	key          text        NOT NULL DEFAULT '',
	payload      bytea       NOT NULL,
	headers      jsonb,
	created_at   timestamptz NOT NULL,
	attempts     integer     NOT NULL DEFAULT 0,
	last_error   text        NOT NULL DEFAULT '',
	lease_owner  text,
	lease_until  timestamptz,
	available_at timestamptz,
	delivered_at timestamptz,
	dead_at      timestamptz,
	CONSTRAINT {{.Name "pkey"}} PRIMARY KEY (seq),
	CONSTRAINT {{.Name "id_key"}} UNIQUE (id)
) WITH (
	fillfactor = 80,
	autovacuum_vacuum_scale_factor = 0.02,
	autovacuum_vacuum_insert_scale_factor = 0.02,
	autovacuum_analyze_scale_factor = 0.02
);

-- The claim's window: the oldest undelivered, live records in Seq order.
CREATE INDEX {{.Name "pending_idx"}} ON {{.Table}} (seq)
	WHERE delivered_at IS NULL AND dead_at IS NULL;

-- The claim's walk over keys, and the records of one key in Seq order
-- (dead ones included, for strict order).
CREATE INDEX {{.Name "pending_key_idx"}} ON {{.Table}} (key, seq)
	WHERE delivered_at IS NULL AND key <> '';

-- Records without key past a clogged window.
CREATE INDEX {{.Name "unkeyed_idx"}} ON {{.Table}} (seq)
	WHERE key = '' AND delivered_at IS NULL AND dead_at IS NULL;

-- Strict order: is there a dead letter before this record of its key?
CREATE INDEX {{.Name "dead_key_idx"}} ON {{.Table}} (key, seq)
	WHERE dead_at IS NOT NULL AND delivered_at IS NULL;

-- Dead letters in Seq order, for listing and replay.
CREATE INDEX {{.Name "dead_idx"}} ON {{.Table}} (seq)
	WHERE dead_at IS NOT NULL AND delivered_at IS NULL;

-- Cleanup: the oldest deliveries first.
CREATE INDEX {{.Name "delivered_idx"}} ON {{.Table}} (delivered_at)
	WHERE delivered_at IS NOT NULL;
