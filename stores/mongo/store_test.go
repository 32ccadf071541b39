package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  mongostore.Config
		bad  string // part of the error, "" when valid
	}{
		{"defaults", mongostore.Config{Database: "app"}, ""},
		{"all set", mongostore.Config{Database: "app-1", Collection: "events_outbox", Limits: outbox.Limits{MaxPayloadBytes: 1 << 20}}, ""},
		{"no database", mongostore.Config{}, "Database is empty"},
		{"dot in database", mongostore.Config{Database: "a.b"}, "Config.Database"},
		{"dollar in collection", mongostore.Config{Database: "app", Collection: "out$box"}, "Config.Collection"},
		{"dot in collection", mongostore.Config{Database: "app", Collection: "out.box"}, "Config.Collection"},
		{"leading digit", mongostore.Config{Database: "1app"}, "starts with"},
		{"too long", mongostore.Config{Database: strings.Repeat("a", mongostore.MaxNameLen+1)}, "bytes long"},
		{"system collection", mongostore.Config{Database: "app", Collection: "system_outbox"}, "reserved"},
		{"negative payload limit", mongostore.Config{Database: "app", Limits: outbox.Limits{MaxPayloadBytes: -1}}, "MaxPayloadBytes"},
		{"payload limit over a document", mongostore.Config{Database: "app", Limits: outbox.Limits{MaxPayloadBytes: 16 << 20}}, "16 MiB"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", c.name, err)
		case c.bad != "" && (!errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig mentioning %q", c.name, err, c.bad)
		}
	}
	if _, err := mongostore.New(nil, mongostore.Config{Database: "app"}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("New(nil client) = %v, want ErrInvalidConfig", err)
	}
}

// offlineClient is a client of a server that does not exist; creating it
// does no I/O.
func offlineClient(t *testing.T) *mongo.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + addr + "/?directConnection=true").
		SetServerSelectionTimeout(300 * time.Millisecond).SetConnectTimeout(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func TestEnqueueNeedsATransaction(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	client := offlineClient(t)
	s, err := mongostore.New(client, mongostore.Config{Database: "app"})
	if err != nil {
		t.Fatal(err)
	}
	msg := outbox.Message{Topic: "t", Key: "k"}
	if err := s.Enqueue(ctx, msg); !errors.Is(err, mongostore.ErrNoTransaction) || !errors.Is(err, outbox.ErrNoTransaction) {
		t.Errorf("Enqueue without a session = %v, want ErrNoTransaction", err)
	}

	other := offlineClient(t)
	sess, err := other.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	if err := s.Enqueue(mongo.NewSessionContext(ctx, sess), msg); !errors.Is(err, mongostore.ErrNoTransaction) ||
		!strings.Contains(err.Error(), "another mongo.Client") {
		t.Errorf("Enqueue with another client's session = %v, want ErrNoTransaction naming the client", err)
	}

	own, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer own.EndSession(ctx)
	if err := s.Enqueue(mongo.NewSessionContext(ctx, own), msg); !errors.Is(err, mongostore.ErrNoTransaction) {
		t.Errorf("Enqueue with a session but no transaction = %v, want ErrNoTransaction", err)
	}

	// Validation comes before any I/O, and so does the transaction check:
	// neither needs the server.
	lenient, err := mongostore.New(client, mongostore.Config{Database: "app", AllowNonTransactional: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := lenient.Enqueue(ctx, outbox.Message{Key: "no topic"}); !errors.Is(err, outbox.ErrMissingTopic) {
		t.Errorf("Enqueue of an invalid message = %v, want ErrMissingTopic", err)
	}
}

func TestUnreachableServerIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, err := mongostore.New(offlineClient(t), mongostore.Config{Database: "app", AllowNonTransactional: true})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]func() error{
		"Ping":    func() error { return s.Ping(ctx) },
		"Enqueue": func() error { return s.Enqueue(ctx, outbox.Message{Topic: "t"}) },
		"Read": func() error {
			_, err := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1})
			return err
		},
		"Migrate": func() error { return s.Migrate(ctx) },
	}
	for name, call := range checks {
		if err := call(); !errors.Is(err, outbox.ErrUnavailable) {
			t.Errorf("%s on an unreachable server = %v, want ErrUnavailable", name, err)
		}
	}
}

func TestSchemaMissingUntilMigrate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	d := capabilities(t)
	s, client := testStore(t, mongostore.Config{})
	// A second store on a database nobody migrated.
	bare, err := mongostore.New(client, mongostore.Config{Database: s.Config().Database, Collection: "other",
		AllowNonTransactional: d.noTransactions != ""})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1}); !errors.Is(err, outbox.ErrSchemaMissing) {
		t.Errorf("Read before Migrate = %v, want ErrSchemaMissing", err)
	}
	if _, err := bare.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Minute}); !errors.Is(err, outbox.ErrSchemaMissing) {
		t.Errorf("SyncLanes before Migrate = %v, want ErrSchemaMissing", err)
	}
	if _, err := bare.Stats(ctx); !errors.Is(err, outbox.ErrSchemaMissing) {
		t.Errorf("Stats before Migrate = %v, want ErrSchemaMissing", err)
	}
	if d.noTransactions != "" {
		err := bare.Enqueue(ctx, outbox.Message{Topic: "t"})
		if !errors.Is(err, outbox.ErrSchemaMissing) || !strings.Contains(err.Error(), "Migrate") {
			t.Errorf("Enqueue before Migrate = %v, want ErrSchemaMissing saying to run Migrate", err)
		}
	}
	missing, err := bare.MissingSchema(ctx)
	if want := []string{"collection other", "collection other_keys", "collection other_lanes", "collection other_relays", "collection other_locks"}; err != nil || !slices.Equal(missing, want) {
		t.Errorf("MissingSchema before Migrate = %q, %v; want %q", missing, err, want)
	}
	if err := bare.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1}); err != nil {
		t.Errorf("Read after Migrate: %v", err)
	}
	if missing, err := bare.MissingSchema(ctx); err != nil || len(missing) != 0 {
		t.Errorf("MissingSchema after Migrate = %q, %v; want nothing", missing, err)
	}
	// An index dropped by hand is missing; Migrate makes it again.
	if err := client.Database(s.Config().Database).Collection("other").Indexes().DropOne(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	if missing, err := bare.MissingSchema(ctx); err != nil || !slices.Equal(missing, []string{`index "dead" of other`}) {
		t.Errorf("MissingSchema without the dead index = %q, %v", missing, err)
	}
	if err := bare.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if missing, err := bare.MissingSchema(ctx); err != nil || len(missing) != 0 {
		t.Errorf("MissingSchema after the second Migrate = %q, %v; want nothing", missing, err)
	}
}

func TestMigrateCreatesCollectionsAndIndexes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{Collection: "events"})
	db := client.Database(s.Config().Database)
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"events", "events_keys", "events_lanes", "events_relays", "events_locks"} {
		if !slices.Contains(names, want) {
			t.Errorf("collections = %v, want %s among them", names, want)
		}
	}
	indexes := func(coll string) map[string]bson.M {
		cur, err := db.Collection(coll).Indexes().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var specs []bson.M
		if err := cur.All(ctx, &specs); err != nil {
			t.Fatal(err)
		}
		byName := make(map[string]bson.M)
		for _, s := range specs {
			byName[s["name"].(string)] = s
		}
		return byName
	}
	got := indexes("events")
	for _, name := range []string{"pending", "dead_key", "dead", "delivered"} {
		if _, ok := got[name]; !ok {
			t.Errorf("index %q missing; have %v", name, got)
		}
	}
	if len(got) != 5 { // with _id_
		t.Errorf("the outbox has indexes %v, want _id_ and 4 more: each costs every Enqueue", slices.Sorted(maps.Keys(got)))
	}
	if lock, ok := indexes("events_locks")["name"]; !ok || lock["unique"] != true {
		t.Errorf("the lanes lock's index = %v, want a unique index named \"name\"", lock)
	}
	if err := s.Migrate(ctx); err != nil { // idempotent
		t.Fatalf("second Migrate: %v", err)
	}
}

// A key's sequence numbers stay increasing when the writer's clock is
// behind the key's last number (another writer's clock ran ahead), and one
// Enqueue with several keys orders each key.
func TestSequenceFollowsTheKeyNotTheClock(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{})
	ahead := time.Now().Add(time.Hour).UnixMicro()
	keys := client.Database(s.Config().Database).Collection("outbox_keys")
	if _, err := keys.InsertOne(ctx, bson.D{{Key: "_id", Value: "k"}, {Key: "seq", Value: ahead}}); err != nil {
		t.Fatal(err)
	}
	msgs := []outbox.Message{
		{Topic: "t", Key: "k", Payload: []byte("k0")},
		{Topic: "t", Key: "j", Payload: []byte("j0")},
		{Topic: "t", Key: "k", Payload: []byte("k1")},
		{Topic: "t", Key: "j", Payload: []byte("j1")},
		{Topic: "t", Key: "k", Payload: []byte("k2")},
	}
	writeDirect(t, ctx, s, client, msgs...)
	var more []outbox.Message
	for i := range 3 {
		more = append(more, outbox.Message{Topic: "t", Key: "k", Payload: fmt.Appendf(nil, "k%d", 3+i)})
	}
	writeDirect(t, ctx, s, client, more...)

	all := readAll(t, ctx, s, holdAll(t, ctx, s, "a"))
	perKey := make(map[string][]string)
	last := make(map[string]int64)
	for _, r := range all {
		if r.Seq <= last[r.Key] {
			t.Errorf("record %s of key %s has Seq %d after %d", r.Payload, r.Key, r.Seq, last[r.Key])
		}
		last[r.Key] = r.Seq
		perKey[r.Key] = append(perKey[r.Key], string(r.Payload))
	}
	if got := strings.Join(perKey["k"], " "); got != "k0 k1 k2 k3 k4 k5" {
		t.Errorf("key k delivered as %s, want k0..k5 in order", got)
	}
	if got := strings.Join(perKey["j"], " "); got != "j0 j1" {
		t.Errorf("key j delivered as %s, want j0 j1", got)
	}
	if last["k"] <= ahead {
		t.Errorf("key k's last Seq %d is not above its counter %d", last["k"], ahead)
	}
}

// writeDirect enqueues msgs in a transaction where the deployment has
// them, else without.
func writeDirect(t *testing.T, ctx context.Context, s *mongostore.Store, client *mongo.Client, msgs ...outbox.Message) {
	t.Helper()
	if capabilities(t).noTransactions != "" {
		if err := s.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		return
	}
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	if _, err := sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		return nil, s.Enqueue(ctx, msgs...)
	}); err != nil {
		t.Fatal(err)
	}
}

// holdAll takes every lane of s for owner, for an hour.
func holdAll(t *testing.T, ctx context.Context, s *mongostore.Store, owner string) []outbox.Lane {
	t.Helper()
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]outbox.Lane, len(view.Lanes))
	for i, l := range view.Lanes {
		want[i] = l.Lane
	}
	taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: time.Hour, Lanes: want})
	if err != nil || len(taken) != len(want) {
		t.Fatalf("TakeLanes of all %d lanes = %d lanes, %v", len(want), len(taken), err)
	}
	return taken
}

// readAll reads and delivers everything pending in lanes, in read order.
func readAll(t *testing.T, ctx context.Context, s *mongostore.Store, lanes []outbox.Lane) []outbox.Record {
	t.Helper()
	var all []outbox.Record
	for {
		recs, err := s.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: ids(recs)}); err != nil {
			t.Fatal(err)
		}
	}
}

func laneIDs(lanes []outbox.Lane) []int {
	out := make([]int, len(lanes))
	for i, l := range lanes {
		out[i] = l.ID
	}
	return out
}

func ids(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func TestListen(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{})
	if why := capabilities(t).noChangeStreams; why != "" {
		_, err := s.Listen(ctx)
		if !errors.Is(err, outbox.ErrUnsupported) {
			t.Fatalf("Listen without change streams = %v, want ErrUnsupported", err)
		}
		t.Skip("the rest needs change streams: " + why)
	}
	ch, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A replayed dead letter wakes the relay too.
	msg := outbox.Message{Topic: "t", Key: "k"}
	writeDirect(t, ctx, s, client, msg)
	waitWake(t, ctx, ch)
	lanes := holdAll(t, ctx, s, "a")
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Dead: []outbox.Failure{{ID: msg.ID, Error: "x"}}}); err != nil {
		t.Fatal(err)
	}
	drainWakes(ch)
	if n, err := s.ReplayDead(ctx, outbox.SelectDead{All: true}); err != nil || n != 1 {
		t.Fatalf("ReplayDead = %d, %v", n, err)
	}
	waitWake(t, ctx, ch)
}

func waitWake(t *testing.T, ctx context.Context, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatal("the listener closed its channel")
		}
	case <-ctx.Done():
		t.Fatal("no wake-up")
	}
}

func drainWakes(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// Two transactions enqueue for one key at once: the second conflicts on
// the key's counter (TransientTransactionError), WithTransaction retries it
// after the first commits, and the outbox holds each message once, in
// commit order.
func TestWriteConflictIsRetriedInOrder(t *testing.T) {
	t.Parallel()
	requireTransactions(t)
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{})
	first := []outbox.Message{{Topic: "t", Key: "user-1", Payload: []byte("first")}}
	second := []outbox.Message{{Topic: "t", Key: "user-1", Payload: []byte("second")}}

	firstEnqueued, secondConflicted := make(chan struct{}), make(chan struct{})
	var onceFirst, onceSecond sync.Once
	var attempts atomic.Int32
	var sawLabel atomic.Bool
	errs := make(chan error, 2)
	inTransaction := func(fn func(ctx context.Context) error) {
		sess, err := client.StartSession()
		if err != nil {
			errs <- err
			return
		}
		defer sess.EndSession(ctx)
		_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) { return nil, fn(ctx) })
		errs <- err
	}
	go inTransaction(func(ctx context.Context) error {
		if err := s.Enqueue(ctx, first...); err != nil {
			return err
		}
		onceFirst.Do(func() { close(firstEnqueued) })
		select { // hold the transaction open until the second has collided with it
		case <-secondConflicted:
		case <-ctx.Done():
		}
		return nil
	})
	go func() {
		<-firstEnqueued
		inTransaction(func(ctx context.Context) error {
			attempts.Add(1)
			err := s.Enqueue(ctx, second...)
			var labeled mongo.LabeledError
			if errors.As(err, &labeled) && labeled.HasErrorLabel("TransientTransactionError") {
				sawLabel.Store(true)
			}
			onceSecond.Do(func() { close(secondConflicted) })
			return err
		})
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("transaction: %v", err)
		}
	}
	if !sawLabel.Load() || attempts.Load() < 2 {
		t.Fatalf("the second transaction ran %d times, saw TransientTransactionError: %v; want a conflict and a retry",
			attempts.Load(), sawLabel.Load())
	}
	n, err := s.Collection().CountDocuments(ctx, bson.D{})
	if err != nil || n != 2 {
		t.Fatalf("the outbox holds %d records (%v), want 2: nothing duplicated by the retry", n, err)
	}
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: laneIDs(holdAll(t, ctx, s, "a")), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ID != first[0].ID || recs[1].ID != second[0].ID {
		t.Fatalf("read %v, want %s then %s: commit order", ids(recs), first[0].ID, second[0].ID)
	}
}

// Header names may hold characters that MongoDB before 5.0 and FerretDB
// refuse in field names.
func TestHeadersWithDotsAndDollars(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, client := testStore(t, mongostore.Config{})
	headers := map[string]string{"x.trace": "1", "$cost": "2", "a": ""}
	writeDirect(t, ctx, s, client, outbox.Message{Topic: "t", Key: "k", Headers: headers})
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: laneIDs(holdAll(t, ctx, s, "a")), Limit: 1})
	if err != nil || len(recs) != 1 {
		t.Fatalf("Read = %v, %v", recs, err)
	}
	if !maps.Equal(recs[0].Headers, headers) {
		t.Fatalf("headers = %v, want %v", recs[0].Headers, headers)
	}
}
