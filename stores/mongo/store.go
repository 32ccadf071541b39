package mongostore

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Store is an outbox in a MongoDB collection. It implements [outbox.Store]
// and every optional capability: [outbox.Listener] (change streams, where
// the deployment has them), [outbox.Cleaner], [outbox.StatsReader],
// [outbox.DeadLetterStore], [outbox.Migrator] and [outbox.Pinger].
//
// A Store is safe for concurrent use; it does not own its client.
type Store struct {
	cfg    Config
	client *mongo.Client

	records *mongo.Collection // the outbox
	keys    *mongo.Collection // per-key sequence counters
	lanes   *mongo.Collection // one document per lane
	relays  *mongo.Collection // live relays
	locks   *mongo.Collection // the lanes lock (FerretDB)

	server server
	lock   lanesLock

	// migrated is set once the collections and indexes are known to
	// exist, so that the check runs once per Store.
	migrated atomic.Bool
	// laneCount is the lane count the lanes collection holds, loaded
	// once per Store; zero until then.
	laneCount atomic.Int64
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
)

// ErrNoTransaction is returned (wrapped) by [Store.Enqueue] when its
// context carries no running transaction and [Config.AllowNonTransactional]
// is not set. It is [outbox.ErrNoTransaction], so either matches with
// errors.Is.
var ErrNoTransaction = outbox.ErrNoTransaction

// New returns a store on the collections that cfg names, reached through
// client. It validates cfg (errors match [outbox.ErrInvalidConfig]) and
// does no I/O: run [Store.Migrate] once before the first Enqueue.
func New(client *mongo.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: mongostore: New needs a *mongo.Client", outbox.ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// The relay reads what it has just written: always from the primary.
	db := client.Database(cfg.Database, options.Database().SetReadPreference(readpref.Primary()))
	s := &Store{
		cfg:     cfg,
		client:  client,
		records: db.Collection(cfg.Collection),
		keys:    db.Collection(cfg.Collection + keysSuffix),
		lanes:   db.Collection(cfg.Collection + lanesSuffix),
		relays:  db.Collection(cfg.Collection + relaysSuffix),
		locks:   db.Collection(cfg.Collection + locksSuffix),
	}
	s.server.client = client
	s.lock.coll = s.locks
	s.lock.server = &s.server
	return s, nil
}

// Names of the collections besides the outbox.
const (
	keysSuffix   = "_keys"
	lanesSuffix  = "_lanes"
	relaysSuffix = "_relays"
	locksSuffix  = "_locks"
)

// Config returns the store's configuration with defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Collection returns the outbox collection, for inspection and tests.
func (s *Store) Collection() *mongo.Collection { return s.records }

// Ping checks that the primary answers. It implements [outbox.Pinger].
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return fail("ping", err)
	}
	return nil
}
