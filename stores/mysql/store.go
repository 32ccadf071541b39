package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Store is an outbox in a MySQL or MariaDB table, read by relays that
// lease its lanes. It implements
// [outbox.Store], [outbox.Cleaner], [outbox.StatsReader],
// [outbox.DeadLetterStore], [outbox.Migrator] and [outbox.Pinger]. Safe for
// concurrent use.
type Store struct {
	db  *sql.DB
	cfg Config

	// Quoted table names.
	table, lanes, relays, migrations string

	server    atomic.Pointer[serverInfo] // set once the server was found supported
	laneCount atomic.Int64               // the lane count in the lanes table, once read

	// onLockConflict, set by tests before use, observes every lock
	// conflict that withRetry retries.
	onLockConflict func(op string, err error)
}

var (
	_ outbox.Store             = (*Store)(nil)
	_ outbox.Cleaner           = (*Store)(nil)
	_ outbox.StatsReader       = (*Store)(nil)
	_ outbox.DeadLetterStore   = (*Store)(nil)
	_ outbox.DeadLetterBacklog = (*Store)(nil)
	_ outbox.Migrator          = (*Store)(nil)
	_ outbox.Pinger            = (*Store)(nil)
)

// New returns a store on db, which must reach MySQL 8.0+ or MariaDB 10.6+.
// It validates cfg (errors match [outbox.ErrInvalidConfig]) and does no I/O:
// [Store.Migrate] and [Store.Ping] check the server and report an
// unsupported one with an error matching [outbox.ErrUnsupported].
func New(db *sql.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: mysqlstore.New needs a *sql.DB", outbox.ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{
		db:         db,
		cfg:        cfg,
		table:      quote(cfg.Table),
		lanes:      quote(cfg.Table + "_lanes"),
		relays:     quote(cfg.Table + "_relays"),
		migrations: quote(cfg.Table + "_migrations"),
	}, nil
}

// Table returns the name of the outbox table.
func (s *Store) Table() string { return s.cfg.Table }

// Ping implements [outbox.Pinger]: it checks that the server answers and is
// a supported version.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return translate("ping", err)
	}
	_, err := s.checkServer(ctx)
	return err
}
