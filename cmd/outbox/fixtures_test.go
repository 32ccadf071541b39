package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
	mysqlstore "github.com/txoutbox/txoutbox/stores/mysql"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// storeFixture is an outbox of one test that the outbox binary reaches
// through args and the test through store (the relay side) and outbox
// (writers).
type storeFixture struct {
	kind string
	// args are the outbox command's store flags: --store and maybe --schema.
	args   []string
	store  outbox.Store
	outbox conformance.Outbox
	// killConnections kills the database connections of this outbox's
	// users (relays and writers), when the database lets the test do so.
	killConnections func(context.Context) (int, error)
}

func (f storeFixture) migrate(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.store.(outbox.Migrator).Migrate(ctx); err != nil {
		t.Fatalf("migrate %s: %v", f.kind, err)
	}
}

func (f storeFixture) stats(t testing.TB) outbox.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := f.store.(outbox.StatsReader).Stats(ctx)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return s
}

// storeURL returns the --store value of args.
func (f storeFixture) storeURL() string {
	i := slices.Index(f.args, "--store")
	return f.args[i+1]
}

// postgresOutbox gives t a schema of its own. Its connections, the relays'
// included (through the URL), carry an application_name of their own, by
// which killConnections finds them.
func postgresOutbox(t testing.TB) storeFixture {
	t.Helper()
	return pgOutbox(t, pgserver.URL(t), false)
}

// pgOutbox is postgresOutbox on the server at serverURL (one of the
// test's own, or the shared one); with tail, in the log-tailing mode
// (pgstore Config.Tail, the relays' --tail), whose slot and publication
// are dropped when t ends (migrate creates them).
func pgOutbox(t testing.TB, serverURL string, tail bool) storeFixture {
	t.Helper()
	return pgOutboxWith(t, serverURL, tail, pgstore.Config{})
}

// pgOutboxWith is pgOutbox with the store's settings in cfg (its Schema
// and Tail are set here).
func pgOutboxWith(t testing.TB, serverURL string, tail bool, cfg pgstore.Config) storeFixture {
	t.Helper()
	base, schema := pgserver.SchemaAt(t, serverURL)
	appName := servers.Name(t, "app")
	storeURL := withQuery(t, base, "application_name", appName)
	pcfg, err := pgxpool.ParseConfig(storeURL)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg.Schema, cfg.Tail = schema, tail
	st, err := pgstore.New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--store", storeURL, "--schema", schema}
	if tail {
		args = append(args, "--tail")
		// Slots retain WAL: drop it once the relays stopped (cleanups run
		// last-in first-out, and relays start after this).
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := st.DropTail(ctx); err != nil {
				t.Errorf("DropTail: %v", err)
			}
		})
	}
	return storeFixture{
		kind:  "postgres",
		args:  args,
		store: st,
		outbox: conformance.Outbox{Store: st, Begin: func(ctx context.Context) (conformance.WriteTx, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			return writeTx{
				enqueue:  func(ctx context.Context, msgs ...outbox.Message) error { return st.Enqueue(ctx, tx, msgs...) },
				commit:   tx.Commit,
				rollback: func(ctx context.Context) error { return ignore(tx.Rollback(ctx), pgx.ErrTxClosed) },
			}, nil
		}},
		killConnections: func(ctx context.Context) (int, error) {
			conn, err := pgx.Connect(ctx, base)
			if err != nil {
				return 0, err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			var n int
			// Pick the victims first: PostgreSQL may evaluate the
			// conditions of one WHERE in any order, and this connection
			// must not terminate itself.
			err = conn.QueryRow(ctx, `WITH victims AS MATERIALIZED (
					SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid())
				SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM victims`, appName).Scan(&n)
			return n, err
		},
	}
}

// mysqlOutbox gives t a database of its own; useURL passes it to the
// binary as a mysql:// URL, else as a go-sql-driver DSN.
func mysqlOutbox(t testing.TB, useURL bool) storeFixture {
	t.Helper()
	dsn, name := mysqlserver.Database(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	storeArg := dsn
	if useURL {
		u := url.URL{Scheme: "mysql", User: url.UserPassword(cfg.User, cfg.Passwd), Host: cfg.Addr, Path: "/" + name}
		storeArg = u.String()
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := mysqlstore.New(db, mysqlstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return storeFixture{
		kind:   "mysql",
		args:   []string{"--store", storeArg},
		store:  st,
		outbox: sqlOutbox(st, db, st.Enqueue),
		killConnections: func(ctx context.Context) (int, error) {
			killer, err := sql.Open("mysql", dsn)
			if err != nil {
				return 0, err
			}
			defer killer.Close()
			conn, err := killer.Conn(ctx)
			if err != nil {
				return 0, err
			}
			defer conn.Close()
			rows, err := conn.QueryContext(ctx, `SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()`, name)
			if err != nil {
				return 0, err
			}
			var ids []int64
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return 0, err
				}
				ids = append(ids, id)
			}
			if err := rows.Err(); err != nil {
				return 0, err
			}
			killed := 0
			for _, id := range ids {
				if _, err := conn.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10)); err == nil {
					killed++ // an "unknown thread" error means it ended meanwhile
				}
			}
			return killed, nil
		},
	}
}

// sqliteOutbox gives t a database file of its own.
func sqliteOutbox(t testing.TB) storeFixture {
	t.Helper()
	path := t.TempDir() + "/outbox.db"
	db, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := sqlitestore.New(db, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return storeFixture{
		kind:   "sqlite",
		args:   []string{"--store", "sqlite://" + path},
		store:  st,
		outbox: sqlOutbox(st, db, st.Enqueue),
	}
}

// sqlOutbox is the conformance view of a database/sql store.
func sqlOutbox[E any](st outbox.Store, db *sql.DB, enqueue func(context.Context, E, ...outbox.Message) error) conformance.Outbox {
	return conformance.Outbox{Store: st, Begin: func(ctx context.Context) (conformance.WriteTx, error) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		e := any(tx).(E)
		return writeTx{
			enqueue:  func(ctx context.Context, msgs ...outbox.Message) error { return enqueue(ctx, e, msgs...) },
			commit:   func(context.Context) error { return tx.Commit() },
			rollback: func(context.Context) error { return ignore(tx.Rollback(), sql.ErrTxDone) },
		}, nil
	}}
}

// mongoOutbox gives t a database of its own on the MongoDB server. On a
// server without transactions (FerretDB), a writer's "transaction" keeps
// its messages in memory and writes them at commit, so that a rolled-back
// one writes nothing; what the relay side sees is the same.
func mongoOutbox(t testing.TB) storeFixture {
	t.Helper()
	base, name := mongoserver.Database(t)
	client, err := mongo.Connect(options.Client().ApplyURI(base).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	noTx := !mongoTransactions(client, name)
	st, err := mongostore.New(client, mongostore.Config{Database: name, AllowNonTransactional: noTx})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	begin := func(ctx context.Context) (conformance.WriteTx, error) {
		if noTx {
			return &bufferedTx{store: st}, nil
		}
		sess, err := client.StartSession()
		if err != nil {
			return nil, err
		}
		if err := sess.StartTransaction(); err != nil {
			sess.EndSession(ctx)
			return nil, err
		}
		sctx := mongo.NewSessionContext(ctx, sess)
		var once sync.Once
		ended := false
		end := func() { once.Do(func() { ended = true; sess.EndSession(context.WithoutCancel(ctx)) }) }
		return writeTx{
			enqueue: func(_ context.Context, msgs ...outbox.Message) error { return st.Enqueue(sctx, msgs...) },
			commit: func(ctx context.Context) error {
				defer end()
				return sess.CommitTransaction(ctx)
			},
			rollback: func(ctx context.Context) error {
				if ended { // after Commit: nothing to do
					return nil
				}
				defer end()
				return sess.AbortTransaction(context.WithoutCancel(ctx))
			},
		}, nil
	}
	return storeFixture{
		kind:   "mongodb",
		args:   []string{"--store", u.String()},
		store:  st,
		outbox: conformance.Outbox{Store: st, Begin: begin},
	}
}

var (
	mongoTxOnce sync.Once
	mongoHasTx  bool
)

// mongoTransactions reports, once per test binary, whether the server runs
// multi-document transactions: it reads a collection of database (the
// test's own, dropped with it) inside one.
func mongoTransactions(client *mongo.Client, database string) bool {
	mongoTxOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sess, err := client.StartSession()
		if err != nil {
			return
		}
		defer sess.EndSession(ctx)
		_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
			n, err := client.Database(database).Collection("probe").CountDocuments(ctx, map[string]any{})
			return n, err
		})
		mongoHasTx = err == nil
	})
	return mongoHasTx
}

// bufferedTx writes its messages at Commit, for MongoDB servers without
// transactions.
type bufferedTx struct {
	store *mongostore.Store
	msgs  []outbox.Message
	done  bool
}

func (tx *bufferedTx) Enqueue(_ context.Context, msgs ...outbox.Message) error {
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		return err
	}
	tx.msgs = append(tx.msgs, msgs...)
	return nil
}

func (tx *bufferedTx) Commit(ctx context.Context) error {
	if tx.done {
		return errors.New("transaction already ended")
	}
	tx.done = true
	if err := ctx.Err(); err != nil {
		return err
	}
	return tx.store.Enqueue(ctx, tx.msgs...)
}

func (tx *bufferedTx) Rollback(context.Context) error {
	tx.done = true
	return nil
}

// writeTx is a conformance.WriteTx from functions.
type writeTx struct {
	enqueue  func(context.Context, ...outbox.Message) error
	commit   func(context.Context) error
	rollback func(context.Context) error
}

func (w writeTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return w.enqueue(ctx, msgs...)
}
func (w writeTx) Commit(ctx context.Context) error   { return w.commit(ctx) }
func (w writeTx) Rollback(ctx context.Context) error { return w.rollback(ctx) }

func ignore(err, harmless error) error {
	if errors.Is(err, harmless) {
		return nil
	}
	return err
}

func withQuery(t testing.TB, raw, key, value string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// brokerFixture is a broker namespace (a topic or stream) of one test on a
// broker the test can stop and start.
type brokerFixture struct {
	kind string
	// url is the --broker value, without size or timeout settings; the
	// tests add them with param.
	url   string
	topic string
	// consumer reads the topic from its start, riding out outages.
	consumer conformance.Broker
	// stop takes the broker down, keeping its data, and start brings it
	// back on the same address; both are nil on a shared broker.
	stop  func()
	start func()
	// setMaxMessageBytes sets the broker's limit on the test's messages
	// (Kafka topic max.message.bytes, NATS stream max_msg_size).
	setMaxMessageBytes func(ctx context.Context, n int) error
}

// param returns the broker URL with a query parameter added.
func (b brokerFixture) param(kv ...string) string {
	var q []string
	for i := 0; i+1 < len(kv); i += 2 {
		q = append(q, url.QueryEscape(kv[i])+"="+url.QueryEscape(kv[i+1]))
	}
	sep := "?"
	if strings.Contains(b.url, "?") {
		sep = "&"
	}
	return b.url + sep + strings.Join(q, "&")
}

// natsBroker starts a nats-server of t's own with a stream for the test.
func natsBroker(t testing.TB) brokerFixture {
	t.Helper()
	srv := natsserver.Start(t)
	stream, prefix := natsserver.Stream(t, srv.URL())
	return brokerFixture{
		kind:     "nats",
		url:      srv.URL(),
		topic:    prefix + ".events",
		consumer: conformance.Broker{Consume: natsConsume(srv.URL(), stream)},
		stop:     srv.Stop,
		start:    srv.Start,
		setMaxMessageBytes: func(ctx context.Context, n int) error {
			nc, err := nats.Connect(srv.URL(), nats.Name("txoutbox cli test admin"))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return err
			}
			cfg := s.CachedInfo().Config
			cfg.MaxMsgSize = int32(n)
			_, err = js.UpdateStream(ctx, cfg)
			return err
		},
	}
}

// natsConsume reads stream from its first message with an ordered
// consumer. When the server goes away it connects again and resumes after
// the last message it delivered, so an outage neither loses nor repeats.
func natsConsume(serverURL, stream string) func(context.Context, []string, func(conformance.Received)) error {
	return func(ctx context.Context, topics []string, fn func(conformance.Received)) error {
		var next uint64 = 1
		for {
			err := natsConsumeFrom(ctx, serverURL, stream, topics, &next, fn)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			select { // the server is restarting: try again shortly
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			_ = err
		}
	}
}

func natsConsumeFrom(ctx context.Context, serverURL, stream string, topics []string, next *uint64, fn func(conformance.Received)) error {
	nc, err := nats.Connect(serverURL, nats.Name("txoutbox cli test consumer"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: *next,
	})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			return err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		*next = meta.Sequence.Stream + 1
		if len(topics) > 0 && !slices.Contains(topics, msg.Subject()) {
			continue
		}
		h := map[string]string{}
		for name, values := range msg.Headers() {
			if len(values) > 0 {
				h[name] = values[0]
			}
		}
		fn(conformance.Received{
			ID: h[natspub.HeaderMsgID], Topic: msg.Subject(), Key: h[natspub.HeaderKey],
			Payload: msg.Data(), Headers: maps.Clone(h),
		})
	}
}

// writeMessages commits n messages to topic in transactions of one to
// three messages of one key, cycling through keys, and records them in
// ledger. It returns the messages in commit order.
func writeMessages(t testing.TB, ctx context.Context, ob conformance.Outbox, ledger *conformance.Ledger, topic string, n, keys int, keyPrefix string) []outbox.Message {
	t.Helper()
	var all []outbox.Message
	for i := 0; len(all) < n; i++ {
		key := fmt.Sprintf("%s-%d", keyPrefix, i%keys)
		msgs := make([]outbox.Message, min(1+i%3, n-len(all)))
		for j := range msgs {
			msgs[j] = outbox.Message{Topic: topic, Key: key, Payload: fmt.Appendf(nil, "%s #%d.%d", key, i, j),
				Headers: map[string]string{"source": "cli-test"}}
		}
		if err := commitMessages(ctx, ob, msgs); err != nil {
			t.Errorf("write: %v", err)
			return all
		}
		ledger.Committed(msgs...)
		all = append(all, msgs...)
	}
	return all
}

// commitMessages writes msgs in one transaction.
func commitMessages(ctx context.Context, ob conformance.Outbox, msgs []outbox.Message) error {
	tx, err := ob.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
