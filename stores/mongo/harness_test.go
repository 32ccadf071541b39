package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
	outbox "github.com/txoutbox/txoutbox/core"
	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
)

func TestMain(m *testing.M) {
	skipExamples()
	os.Exit(servers.MainFunc(m, prepareExamples))
}

// One client per server URL for the whole test binary.
var (
	clientsMu sync.Mutex
	clients   = map[string]*mongo.Client{}
)

func connect(url string) (*mongo.Client, error) {
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if c, ok := clients[url]; ok {
		return c, nil
	}
	c, err := mongo.Connect(options.Client().ApplyURI(url).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		return nil, err
	}
	clients[url] = c
	return c, nil
}

func clientFor(t testing.TB, url string) *mongo.Client {
	t.Helper()
	c, err := connect(url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	return c
}

// deployment says what the test server lacks; empty strings mean it has
// the capability.
type deployment struct {
	noTransactions  string
	noChangeStreams string
}

var (
	probeOnce sync.Once
	probed    deployment
	probeErr  error
)

// capabilities finds the test server (or skips t) and what it supports,
// once per test binary.
func capabilities(t testing.TB) deployment {
	t.Helper()
	url := mongoserver.URL(t)
	probeOnce.Do(func() { probed, probeErr = probe(url) })
	if probeErr != nil {
		t.Fatalf("mongo: probing the server at %s: %v", url, probeErr)
	}
	return probed
}

// probe runs a one-insert transaction and opens a change stream in a
// scratch database.
func probe(url string) (deployment, error) {
	var d deployment
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := connect(url)
	if err != nil {
		return d, err
	}
	db := client.Database(fmt.Sprintf("outbox_probe_%d_%d", os.Getpid(), time.Now().UnixNano()))
	defer func() { _ = db.Drop(context.Background()) }()
	if err := db.CreateCollection(ctx, "probe"); err != nil {
		return d, err
	}
	coll := db.Collection("probe")
	sess, err := client.StartSession()
	if err != nil {
		return d, err
	}
	defer sess.EndSession(context.Background())
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		return coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	})
	if err != nil {
		d.noTransactions = "the MongoDB deployment has no multi-document transactions (a replica set has them): " + oneLine(err)
	}
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		d.noChangeStreams = "the MongoDB deployment has no change streams (a replica set has them): " + oneLine(err)
	} else {
		_ = cs.Close(ctx)
	}
	return d, nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// requireTransactions skips t on a deployment without transactions.
func requireTransactions(t *testing.T) {
	t.Helper()
	if why := capabilities(t).noTransactions; why != "" {
		t.Skip("needs transactions: " + why)
	}
}

// testStore returns a migrated store in a database of t's own, and its
// client. Without transactions on the server, the store writes without.
func testStore(t testing.TB, cfg mongostore.Config) (*mongostore.Store, *mongo.Client) {
	t.Helper()
	d := capabilities(t)
	url, db := mongoserver.Database(t)
	client := clientFor(t, url)
	cfg.Database = db
	if d.noTransactions != "" {
		cfg.AllowNonTransactional = true
	}
	s, err := mongostore.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s, client
}

// storeHarness builds outboxes for the store suite. On a deployment
// without transactions, tests that need a rollback skip with the reason.
// Without change streams, Listen would only say ErrUnsupported (TestListen
// checks that): the store is offered with a Listen that skips the test
// calling it, naming the capability.
func storeHarness(t *testing.T) conformance.StoreHarness {
	return harness(t, func(t *testing.T, s *mongostore.Store, why string) outbox.Store {
		return skipListen{withoutListener{s, s, s, s, s, s, s, s}, t, why}
	})
}

// relayHarness builds outboxes for the relay suite. Without change
// streams, the store is offered without Listen: the relay polls.
func relayHarness(t *testing.T) conformance.StoreHarness {
	return harness(t, func(_ *testing.T, s *mongostore.Store, _ string) outbox.Store {
		return withoutListener{s, s, s, s, s, s, s, s}
	})
}

func harness(t *testing.T, noListen func(t *testing.T, s *mongostore.Store, why string) outbox.Store) conformance.StoreHarness {
	d := capabilities(t)
	scale := 1.0
	if d.noTransactions != "" {
		// FerretDB, the deployment without transactions that CI uses,
		// filters and sorts in its Go layer: every read decodes all
		// pending records. Smaller backlogs keep the suites within their
		// deadlines; the scenarios stay the same.
		scale = 0.25
	}
	return conformance.StoreHarness{
		WithoutTransactions: d.noTransactions,
		Scale:               scale,
		New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
			s, client := testStore(t, mongostore.Config{Limits: opts.Limits, Lanes: opts.Lanes})
			ob := outboxOf(s, client, d)
			if d.noChangeStreams != "" {
				ob.Store = noListen(t, s, d.noChangeStreams)
			}
			return ob
		},
	}
}

func outboxOf(s *mongostore.Store, client *mongo.Client, d deployment) conformance.Outbox {
	ob := conformance.Outbox{Store: s}
	if d.noTransactions != "" {
		ob.Begin = func(context.Context) (conformance.WriteTx, error) { return directTx{s}, nil }
		return ob
	}
	ob.Begin = func(ctx context.Context) (conformance.WriteTx, error) {
		sess, err := client.StartSession()
		if err != nil {
			return nil, err
		}
		if err := sess.StartTransaction(); err != nil {
			sess.EndSession(ctx)
			return nil, err
		}
		return &sessionTx{s: s, sess: sess}, nil
	}
	return ob
}

// withoutListener is a store minus Listen.
type withoutListener struct {
	outbox.Store
	outbox.Cleaner
	outbox.StatsReader
	outbox.DeadLetterStore
	outbox.DeadLetterBacklog
	outbox.Inspector
	outbox.Migrator
	outbox.Pinger
}

// skipListen is a store whose Listen skips the test that calls it.
type skipListen struct {
	withoutListener
	t   *testing.T
	why string
}

func (s skipListen) Listen(context.Context) (<-chan struct{}, error) {
	s.t.Skip("needs change streams: " + s.why)
	return nil, outbox.ErrUnsupported
}

// sessionTx is an application transaction on a session.
type sessionTx struct {
	s    *mongostore.Store
	sess *mongo.Session
	done bool
}

func (w *sessionTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return w.s.Enqueue(mongo.NewSessionContext(ctx, w.sess), msgs...)
}

func (w *sessionTx) Commit(ctx context.Context) error {
	w.done = true
	defer w.sess.EndSession(ctx)
	return w.sess.CommitTransaction(ctx)
}

func (w *sessionTx) Rollback(ctx context.Context) error {
	if w.done {
		return nil
	}
	w.done = true
	// The server may have aborted the transaction already (a failed write
	// does that); ending the session aborts whatever is left.
	_ = w.sess.AbortTransaction(ctx)
	w.sess.EndSession(ctx)
	return nil
}

// directTx writes at once, for deployments without transactions: it
// cannot roll back, which is why the suites skip the tests that do.
type directTx struct{ s *mongostore.Store }

func (w directTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return w.s.Enqueue(ctx, msgs...)
}
func (directTx) Commit(context.Context) error   { return nil }
func (directTx) Rollback(context.Context) error { return nil }
