package pgstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Store is an outbox in a PostgreSQL table. It implements [outbox.Store] and
// every optional capability: [outbox.Listener], [outbox.Cleaner],
// [outbox.StatsReader], [outbox.DeadLetterStore], [outbox.Migrator] and
// [outbox.Pinger]. Writers call [Store.Enqueue] in their own transactions.
// A Store is safe for concurrent use; it does not own its pool.
type Store struct {
	pool   *pgxpool.Pool
	cfg    Config
	names  names
	sql    statements
	listen listenConfig
	notify *notifier
	tail   tailNames

	// slotSeen is when Enqueue last found the replication slot (unix
	// nanoseconds; Config.Tail).
	slotSeen atomic.Int64

	// lanes is the lane count of the table, read once (laneTotal) and
	// cached; zero until then.
	lanes atomic.Int64
}

var (
	_ outbox.Store             = (*Store)(nil)
	_ outbox.Listener          = (*Store)(nil)
	_ outbox.Cleaner           = (*Store)(nil)
	_ outbox.StatsReader       = (*Store)(nil)
	_ outbox.DeadLetterStore   = (*Store)(nil)
	_ outbox.DeadLetterBacklog = (*Store)(nil)
	_ outbox.Migrator          = (*Store)(nil)
	_ outbox.Pinger            = (*Store)(nil)
	_ outbox.LogTailer         = (*Store)(nil)
)

// New returns a store on the table that cfg names, reached through pool. It
// validates cfg (errors match [outbox.ErrInvalidConfig]) but does not touch
// the database: call [Store.Migrate] (or run `outbox migrate`) to create
// the tables.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: pgstore: New needs a *pgxpool.Pool", outbox.ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := newNames(cfg.Schema, cfg.Table)
	s := &Store{
		pool:   pool,
		cfg:    cfg,
		names:  n,
		sql:    newStatements(n),
		listen: defaultListenConfig,
		tail:   newTailNames(cfg.Schema, cfg.Table),
	}
	s.notify = sharedNotifier(pool, n.channel, cfg.NotifyInterval, s.notifyNow)
	return s, nil
}

// Config returns the store's configuration with defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Table returns the quoted, schema-qualified name of the outbox table, as
// it appears in the store's statements, e.g. "public"."outbox".
func (s *Store) Table() string { return s.names.qualTab }

// Channel returns the name of the channel that Enqueue notifies and Listen
// listens to: "<schema>.<table>" (e.g. "public.outbox"), or when that is
// longer than the 63 bytes PostgreSQL allows, its first 46 bytes, an
// underscore and 16 hexadecimal digits of a hash of the whole. Another
// program may LISTEN to it (quoted: LISTEN "public.outbox").
func (s *Store) Channel() string { return s.names.channel }

// Ping checks that the server answers. It implements [outbox.Pinger].
func (s *Store) Ping(ctx context.Context) error {
	return translate("ping", s.pool.Ping(ctx))
}

// micros converts d to whole microseconds, PostgreSQL's precision, rounding
// up so that a positive duration never becomes zero.
func micros(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}
