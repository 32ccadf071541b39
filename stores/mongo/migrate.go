package mongostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// index is one index the store needs.
type index struct {
	name    string
	keys    bson.D
	partial bson.D // partialFilterExpression, where the server supports it
	unique  bool
}

// recordIndexes are the outbox collection's indexes. Each holds the records
// of one state only (a partial index), so their size follows the backlog,
// not the number of delivered records kept for Retention. Every index costs
// each Enqueue a write, so there are only these.
var recordIndexes = []index{
	// Read walks the pending records in sequence order and filters lanes
	// and skipped keys on the index keys, before fetching a document: the
	// sort is the index's order, never an in-memory sort of the backlog,
	// whatever share of the lanes a relay holds. Stats and TakeLanes's
	// charge use it too.
	{name: "pending", keys: bson.D{{Key: fState, Value: 1}, {Key: fSeq, Value: 1}, {Key: fLane, Value: 1}, {Key: fKey, Value: 1}},
		partial: bson.D{inState(statePending)}},
	// StrictOrder: the earliest dead letter of each key.
	{name: "dead_key", keys: bson.D{{Key: fState, Value: 1}, {Key: fKey, Value: 1}, {Key: fSeq, Value: 1}}, partial: bson.D{inState(stateDead)}},
	// Dead letters in write order.
	{name: "dead", keys: bson.D{{Key: fSeq, Value: 1}, {Key: fID, Value: 1}}, partial: bson.D{inState(stateDead)}},
	// Cleanup of delivered records, oldest first.
	{name: "delivered", keys: bson.D{{Key: fDeliveredAt, Value: 1}}, partial: bson.D{inState(stateDelivered)}},
}

// lockIndexes make the lanes lock exclusive.
var lockIndexes = []index{
	{name: "name", keys: bson.D{{Key: lockName, Value: 1}}, unique: true},
}

// collections are the store's collections, the outbox first.
func (s *Store) collections() []*mongo.Collection {
	return []*mongo.Collection{s.records, s.keys, s.lanes, s.relays, s.locks}
}

// Migrate creates the store's collections and indexes where they are
// missing, and the lane documents (Config.Lanes of them) when there are
// none. It implements [outbox.Migrator]: it is idempotent and safe to run
// from several processes at once. Run it before the first Enqueue, outside
// any transaction: MongoDB cannot create collections or indexes inside one.
// The lane count is fixed by the first Migrate; later ones keep it.
//
// On servers without partial indexes (FerretDB) it creates the same indexes
// without the partial filter; the store's queries work with either.
func (s *Store) Migrate(ctx context.Context) error {
	ctx = withoutSession(ctx)
	for _, coll := range s.collections() {
		err := coll.Database().CreateCollection(ctx, coll.Name())
		if err != nil && !hasCode(err, codeNamespaceExists) {
			return fail("migrate: create collection "+coll.Name(), err)
		}
	}
	if err := ensureIndexes(ctx, s.records, recordIndexes); err != nil {
		return err
	}
	if err := ensureIndexes(ctx, s.locks, lockIndexes); err != nil {
		return err
	}
	if err := s.insertLanes(ctx); err != nil {
		return err
	}
	s.migrated.Store(true)
	return nil
}

// insertLanes inserts the lane documents {_id: lane, owner: "", epoch: 0,
// lease_until: null} unless lane 0 exists. They are inserted in one
// ordered insertMany from the last lane down to lane 0, so lane 0 exists
// only once all the others do: laneCount trusts the lanes only then. A
// Migrate that died half way left the highest lanes: the next one inserts
// the rest of the same count.
func (s *Store) insertLanes(ctx context.Context) error {
	cur, err := s.lanes.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: fID, Value: 1}}))
	if err != nil {
		return fail("migrate: read the lanes", err)
	}
	var have []struct {
		ID int `bson:"_id"`
	}
	if err := cur.All(ctx, &have); err != nil {
		return fail("migrate: read the lanes", err)
	}
	n := s.cfg.Lanes
	exists := make(map[int]bool, len(have))
	for i, l := range have {
		if l.ID == 0 {
			return nil
		}
		exists[l.ID] = true
		if i == 0 || l.ID+1 > n {
			n = l.ID + 1
		}
	}
	var docs []any
	for id := n - 1; id >= 0; id-- {
		if !exists[id] {
			docs = append(docs, laneDoc{ID: id})
		}
	}
	_, err = s.lanes.InsertMany(ctx, docs, options.InsertMany().SetOrdered(true))
	if err != nil && !mongo.IsDuplicateKeyError(err) { // another Migrate is inserting them
		return fail("migrate: insert the lanes", err)
	}
	return nil
}

// ensureIndexes creates the indexes of want that coll lacks. It tries
// again after a network error, because FerretDB 1.24 drops the connection
// when two clients create indexes at once.
func ensureIndexes(ctx context.Context, coll *mongo.Collection, want []index) error {
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = createMissing(ctx, coll, want); err == nil || !unavailable(err) || ctx.Err() != nil {
			break
		}
		if sleep(ctx, time.Duration(attempt)*50*time.Millisecond) != nil {
			break
		}
	}
	if err != nil {
		return fail("migrate: create indexes of "+coll.Name(), err)
	}
	return nil
}

func createMissing(ctx context.Context, coll *mongo.Collection, want []index) error {
	have, err := indexNames(ctx, coll)
	if err != nil {
		return err
	}
	for _, ix := range want {
		if slices.Contains(have, ix.name) {
			continue
		}
		err := createIndex(ctx, coll, ix, true)
		if err != nil && ix.partial != nil && partialUnsupported(err) {
			err = createIndex(ctx, coll, ix, false)
		}
		if err != nil && !indexRaced(err) {
			return err
		}
	}
	return nil
}

func createIndex(ctx context.Context, coll *mongo.Collection, ix index, partial bool) error {
	opts := options.Index().SetName(ix.name)
	if ix.unique {
		opts.SetUnique(true)
	}
	if partial && ix.partial != nil {
		opts.SetPartialFilterExpression(ix.partial)
	}
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.keys, Options: opts})
	return err
}

// indexNames lists the names of coll's indexes; none when it does not exist.
func indexNames(ctx context.Context, coll *mongo.Collection) ([]string, error) {
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		if hasCode(err, codeNamespaceNotFound) {
			return nil, nil
		}
		return nil, err
	}
	var specs []struct {
		Name string `bson:"name"`
	}
	if err := cur.All(ctx, &specs); err != nil {
		return nil, err
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names, nil
}

// partialUnsupported reports whether the server refused a partial index
// because it has none (FerretDB).
func partialUnsupported(err error) bool {
	return hasCode(err, codeNotImplemented, codeCommandNotSupported) ||
		strings.Contains(err.Error(), "partialFilterExpression")
}

// indexRaced reports whether another Migrate created the index first.
func indexRaced(err error) bool {
	const indexAlreadyExists, indexBuildAlreadyInProgress = 68, 276
	return hasCode(err, indexAlreadyExists, indexBuildAlreadyInProgress, codeNamespaceExists)
}

// ready checks, once per Store, that Migrate has run: the collections and
// the indexes the store depends on exist. Otherwise it returns an error
// matching [outbox.ErrSchemaMissing].
func (s *Store) ready(ctx context.Context) error {
	if s.migrated.Load() {
		return nil
	}
	missing, err := s.MissingSchema(ctx)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("mongostore: %s is missing in database %q (run Store.Migrate or `outbox migrate`): %w",
			missing[0], s.records.Database().Name(), outbox.ErrSchemaMissing)
	}
	s.migrated.Store(true)
	return nil
}

// MissingSchema lists what [Store.Migrate] would create: the collections
// that do not exist ("collection outbox"), then the indexes missing from
// the collections that do (`index "pending" of outbox`), then the lane
// documents ("lanes of outbox_lanes") when they are missing. It is empty
// when the schema is complete. MongoDB has no schema version: the
// collections and their indexes are the schema.
func (s *Store) MissingSchema(ctx context.Context) ([]string, error) {
	ctx = withoutSession(ctx)
	names, err := s.records.Database().ListCollectionNames(ctx, bson.D{{Key: "name", Value: bson.D{{Key: "$in",
		Value: bson.A{s.records.Name(), s.keys.Name(), s.lanes.Name(), s.relays.Name(), s.locks.Name()}}}}})
	if err != nil {
		return nil, fail("check the schema", err)
	}
	var missing []string
	for _, c := range s.collections() {
		if !slices.Contains(names, c.Name()) {
			missing = append(missing, "collection "+c.Name())
		}
	}
	for _, c := range []struct {
		coll *mongo.Collection
		want []index
	}{{s.records, recordIndexes}, {s.locks, lockIndexes}} {
		if !slices.Contains(names, c.coll.Name()) {
			continue // its indexes come with it
		}
		have, err := indexNames(ctx, c.coll)
		if err != nil {
			return nil, fail("check the schema", err)
		}
		for _, ix := range c.want {
			if !slices.Contains(have, ix.name) {
				missing = append(missing, fmt.Sprintf("index %q of %s", ix.name, c.coll.Name()))
			}
		}
	}
	if slices.Contains(names, s.lanes.Name()) {
		err := s.lanes.FindOne(ctx, bson.D{{Key: fID, Value: 0}}).Err()
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			missing = append(missing, "lanes of "+s.lanes.Name())
		case err != nil:
			return nil, fail("check the schema", err)
		}
	}
	return missing, nil
}

// lanesCount returns the lane count, loaded once per Store through the
// store's own client (never the caller's transaction): one more than the
// highest lane, provided lane 0 exists, which Migrate inserts last.
// Otherwise it returns an error matching [outbox.ErrSchemaMissing].
func (s *Store) lanesCount(ctx context.Context) (int, error) {
	if n := s.laneCount.Load(); n > 0 {
		return int(n), nil
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	var last laneDoc
	err := s.lanes.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: fID, Value: -1}})).Decode(&last)
	if err == nil {
		err = s.lanes.FindOne(ctx, bson.D{{Key: fID, Value: 0}}).Err()
	}
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return 0, fmt.Errorf("mongostore: the lanes of %s.%s are missing or incomplete (run Store.Migrate or `outbox migrate`): %w",
			s.records.Database().Name(), s.lanes.Name(), outbox.ErrSchemaMissing)
	case err != nil:
		return 0, fail("read the lane count", err)
	}
	s.laneCount.Store(int64(last.ID + 1))
	return last.ID + 1, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
