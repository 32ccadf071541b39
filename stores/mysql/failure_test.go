package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	outbox "github.com/txoutbox/txoutbox/core"
)

// sessionConnector opens connections with an inner connector and records
// each one's server session id (CONNECTION_ID()), so that a test can kill
// the sessions of one pool and no other.
type sessionConnector struct {
	driver.Connector
	mu  sync.Mutex
	ids []int64
}

func (c *sessionConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := conn.(driver.QueryerContext).QueryContext(ctx, "SELECT CONNECTION_ID()", nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	vals := make([]driver.Value, 1)
	err = rows.Next(vals)
	rows.Close()
	if err != nil {
		conn.Close()
		return nil, err
	}
	var id int64
	switch v := vals[0].(type) {
	case int64:
		id = v
	case []byte:
		_, err = fmt.Sscan(string(v), &id)
	case uint64:
		id = int64(v)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.mu.Lock()
	c.ids = append(c.ids, id)
	c.mu.Unlock()
	return conn, nil
}

func (c *sessionConnector) sessions() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.ids...)
}

// openRecorded opens dsn through a sessionConnector.
func openRecorded(t testing.TB, dsn string) (*sql.DB, *sessionConnector) {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = &mysql.NopLogger{} // killed connections are the point
	inner, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc := &sessionConnector{Connector: inner}
	db := sql.OpenDB(sc)
	db.SetMaxOpenConns(16)
	t.Cleanup(func() { _ = db.Close() })
	return db, sc
}

// killSessions kills those of ids that are alive and returns how many it
// killed, and how many of those were running a statement.
func killSessions(ctx context.Context, admin *sql.DB, ids []int64) (killed, busy int, err error) {
	if len(ids) == 0 {
		return 0, 0, nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = fmt.Sprint(id)
	}
	rows, err := admin.QueryContext(ctx, "SELECT ID, INFO IS NOT NULL FROM information_schema.PROCESSLIST WHERE ID IN ("+strings.Join(list, ",")+")")
	if err != nil {
		return 0, 0, err
	}
	type session struct {
		id   int64
		busy bool
	}
	var alive []session
	for rows.Next() {
		var s session
		if err := rows.Scan(&s.id, &s.busy); err != nil {
			rows.Close()
			return 0, 0, err
		}
		alive = append(alive, s)
	}
	rows.Close()
	for _, s := range alive {
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", s.id)); err != nil {
			if n, ok := serverError(err); ok && n == 1094 { // unknown thread: it ended meanwhile
				continue
			}
			return killed, busy, err
		}
		killed++
		if s.busy {
			busy++
		}
	}
	return killed, busy, nil
}

// TestRelaySurvivesKilledConnections runs relays while their database
// sessions are killed (KILL CONNECTION): first while a claim waits for the
// claim lock, then at random moments while writers keep writing. Nothing
// committed may be lost and per-key order must hold.
func TestRelaySurvivesKilledConnections(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dsn := testDSN(t, nil)
	admin := openDB(t, dsn)
	writerDB := openDB(t, dsn)
	relayDB, sessions := openRecorded(t, dsn)
	writer := newStore(t, writerDB, Config{})
	relayStore, err := New(relayDB, Config{})
	if err != nil {
		t.Fatal(err)
	}

	b := conformance.MemoryBroker().New(t)
	topic := b.Topic(t)
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, b, ledger, topic)
	for i := range 2 {
		cfg := conformance.TestRelayConfig(t)
		cfg.Owner = fmt.Sprintf("relay-%d", i)
		cfg.Lease = 2 * time.Second // records of a killed claim come back soon
		cfg.PublishTimeout = time.Second
		cfg.Logger = slog.New(slog.DiscardHandler) // the failures are the point; the ledger is the verdict
		conformance.StartRelay(t, relayStore, b.Publisher, cfg)
	}

	// 1. Kill the sessions of claims that wait for the claim lock.
	hold, err := admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, "SELECT id FROM "+relayStore.lock+" WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	ledger.Committed(enqueue(t, ctx, writerDB, writer, keyed(topic, "before", 50)...)...)
	for range 3 {
		var waiting []int64
		poll(t, ctx, "a claim waiting for the claim lock", func() bool {
			waiting = claimsWaiting(t, ctx, admin, sessions.sessions())
			return len(waiting) > 0
		})
		if _, _, err := killSessions(ctx, admin, waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}

	// 2. Kill every relay session at random moments while writers write.
	var killed, busy atomic.Int64
	killing := make(chan struct{})
	go func() {
		defer close(killing)
		rng := rand.New(rand.NewPCG(1, 2))
		for range 30 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(20+rng.IntN(100)) * time.Millisecond):
			}
			k, b, err := killSessions(ctx, admin, sessions.sessions())
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("kill: %v", err)
				}
				return
			}
			killed.Add(int64(k))
			busy.Add(int64(b))
		}
	}()
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; i < 2000; i++ { // bounded; they stop when the killing does
				select {
				case <-killing:
					return
				default:
				}
				msgs := keyed(topic, fmt.Sprintf("w%d-k%d", w, i%5), 1+i%3)
				ledger.Committed(enqueue(t, ctx, writerDB, writer, msgs...)...)
			}
		})
	}
	wg.Wait()
	<-killing

	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	rep := ledger.Report()
	t.Logf("killed %d relay sessions (%d mid-statement): %s", killed.Load(), busy.Load(), rep)
	if !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
	if killed.Load() == 0 {
		t.Fatal("no session was killed; the test proved nothing")
	}
}

// claimsWaiting returns the sessions among ids that wait for the claim lock.
func claimsWaiting(t *testing.T, ctx context.Context, admin *sql.DB, ids []int64) []int64 {
	t.Helper()
	if len(ids) == 0 {
		return nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = fmt.Sprint(id)
	}
	rows, err := admin.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ("+
		strings.Join(list, ",")+") AND INFO LIKE '%_lock` WHERE id = 1 FOR UPDATE%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

// keyed returns n messages of topic and key.
func keyed(topic, key string, n int) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: topic, Key: key, Payload: fmt.Appendf(nil, "%s-%d", key, i)}
	}
	return msgs
}

// poll waits for cond, failing t if ctx ends first.
func poll(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 100*time.Millisecond) {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// TestDeadlockInClaimIsRetried makes InnoDB pick a claim as the victim of a
// deadlock; the claim must be retried and succeed.
func TestDeadlockInClaimIsRetried(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dsn := testDSN(t, nil)
	db := openDB(t, dsn)
	s := newStore(t, db, Config{})
	msgs := enqueue(t, ctx, db, s, keyed("t", "k", 3)...)
	conflicts := make(chan error, 10)
	s.onLockConflict = func(op string, err error) { conflicts <- fmt.Errorf("%s: %w", op, err) }

	// The other transaction is the heavier one (it changed every record),
	// so that InnoDB rolls back the claim.
	other, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback() }()
	if _, err := other.ExecContext(ctx, "UPDATE "+s.table+" SET last_error = 'changed by another transaction' WHERE seq > 0"); err != nil {
		t.Fatal(err)
	}

	type result struct {
		recs []outbox.Record
		err  error
	}
	done := make(chan result, 1)
	go func() {
		recs, err := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 10, Lease: time.Hour})
		done <- result{recs, err}
	}()
	// Once the claim holds the claim lock and waits for the record, take
	// the claim lock: a cycle.
	poll(t, ctx, "the claim to wait for the locked record", func() bool {
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"+
			" JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"+
			" WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	if _, err := other.ExecContext(ctx, "SELECT id FROM "+s.lock+" WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatalf("the other transaction was chosen as the deadlock victim (%v); the test needs the claim to be", err)
	}
	select {
	case err := <-conflicts:
		if n, _ := serverError(err); n != erLockDeadlock {
			t.Fatalf("the claim retried after %v, want a deadlock (1213)", err)
		}
	case r := <-done:
		t.Fatalf("the claim returned %d records, %v without a deadlock", len(r.recs), r.err)
	}
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Claim after a deadlock: %v", r.err)
	}
	if len(r.recs) != 3 || r.recs[0].ID != msgs[0].ID || r.recs[0].Attempts != 1 || r.recs[0].LastError != "changed by another transaction" {
		t.Fatalf("Claim after a deadlock = %d records (first %+v), want the 3 records once, in order, as the other transaction left them", len(r.recs), r.recs)
	}
}

// TestLockWaitTimeoutIsRetried holds a lock on a leased record past the
// session's innodb_lock_wait_timeout: MarkDelivered retries and succeeds
// once the lock goes; a lock that never goes is reported, wrapped.
func TestLockWaitTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dsn := testDSN(t, func(c *mysql.Config) { c.Params["innodb_lock_wait_timeout"] = "1" })
	db := openDB(t, dsn)
	s := newStore(t, db, Config{})
	enqueue(t, ctx, db, s, keyed("t", "a", 1)...)
	enqueue(t, ctx, db, s, keyed("t", "b", 1)...)
	recs := claimOK(t, ctx, s, "owner", 10, time.Hour)
	if len(recs) != 2 {
		t.Fatalf("claimed %d, want 2", len(recs))
	}
	conflicts := make(chan error, 100)
	s.onLockConflict = func(op string, err error) { conflicts <- err }

	lockRecord := func(id string) *sql.Tx {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "SELECT id FROM "+s.table+" WHERE id = ? FOR UPDATE", id); err != nil {
			t.Fatal(err)
		}
		return tx
	}

	t.Run("released", func(t *testing.T) {
		hold := lockRecord(recs[0].ID)
		done := make(chan error, 1)
		go func() {
			done <- s.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "owner", IDs: []string{recs[0].ID}})
		}()
		err := <-conflicts
		if n, _ := serverError(err); n != erLockWaitTimeout {
			t.Fatalf("retried after %v, want a lock wait timeout (1205)", err)
		}
		if err := hold.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("MarkDelivered after a lock wait timeout: %v", err)
		}
	})
	t.Run("held", func(t *testing.T) {
		hold := lockRecord(recs[1].ID)
		defer func() { _ = hold.Rollback() }()
		err := s.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "owner", IDs: []string{recs[1].ID}})
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != erLockWaitTimeout || !strings.Contains(err.Error(), "gave up after 5 lock conflicts") {
			t.Fatalf("MarkDelivered with the record locked throughout = %v; want the lock wait timeout, wrapped, after 5 tries", err)
		}
	})
	if got, _ := s.ListDead(ctx, outbox.ListDeadParams{}); len(got) != 0 {
		t.Fatalf("dead letters appeared: %v", got)
	}
	if rest := claimOK(t, ctx, s, "other", 10, time.Hour); len(rest) != 0 {
		t.Fatalf("claimed %v; the first record is delivered and the second still leased", recordIDs(rest))
	}
}

// TestErrorsAreTranslated checks the sentinels behind driver errors.
func TestErrorsAreTranslated(t *testing.T) {
	t.Parallel()
	t.Run("schema missing", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		db := openDB(t, testDSN(t, nil))
		s, err := New(db, Config{}) // not migrated
		if err != nil {
			t.Fatal(err)
		}
		_, claimErr := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 1, Lease: time.Second})
		_, statsErr := s.Stats(ctx)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		enqueueErr := s.Enqueue(ctx, tx, outbox.Message{Topic: "t"})
		for name, err := range map[string]error{"Claim": claimErr, "Stats": statsErr, "Enqueue": enqueueErr} {
			if !errors.Is(err, outbox.ErrSchemaMissing) {
				t.Errorf("%s without Migrate = %v, want ErrSchemaMissing", name, err)
			}
		}
	})
	t.Run("refused or missing", func(t *testing.T) {
		// An unknown user and a user without privileges are
		// ErrAccessDenied, an unknown database ErrDatabaseMissing, from
		// every operation the CLI runs; none of them is ErrUnavailable,
		// which would be retried.
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		admin := openDB(t, testDSN(t, nil))
		user := servers.Name(t, "noaccess")
		if _, err := admin.ExecContext(ctx, "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'pw'"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP USER IF EXISTS '"+user+"'@'%'"); err != nil {
				t.Errorf("drop user %s: %v", user, err)
			}
		})
		newStore(t, admin, Config{}) // the tables exist: only the refusals can fail
		tests := []struct {
			name  string
			tweak func(*mysql.Config)
			want  error
		}{
			{"unknown user", func(c *mysql.Config) { c.User, c.Passwd = servers.Name(t, "nouser"), "pw" }, outbox.ErrAccessDenied},
			{"wrong password", func(c *mysql.Config) { c.User, c.Passwd = user, "wrong" }, outbox.ErrAccessDenied},
			{"no privilege", func(c *mysql.Config) { c.User, c.Passwd = user, "pw" }, outbox.ErrAccessDenied},
			{"unknown database", func(c *mysql.Config) { c.DBName = servers.Name(t, "nodb") }, outbox.ErrDatabaseMissing},
		}
		sentinels := []error{outbox.ErrSchemaMissing, outbox.ErrDatabaseMissing, outbox.ErrAccessDenied, outbox.ErrUnavailable}
		for _, tt := range tests {
			s, err := New(openDB(t, testDSN(t, tt.tweak)), Config{})
			if err != nil {
				t.Fatal(err)
			}
			_, claimErr := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 1, Lease: time.Second})
			_, statsErr := s.Stats(ctx)
			_, listErr := s.ListDead(ctx, outbox.ListDeadParams{Limit: 1})
			for op, err := range map[string]error{"Claim": claimErr, "Stats": statsErr, "ListDead": listErr, "Ping": s.Ping(ctx), "Migrate": s.Migrate(ctx)} {
				for _, sentinel := range sentinels {
					if errors.Is(err, sentinel) != (sentinel == tt.want) {
						t.Errorf("%s with %s = %v; errors.Is(%v) = %v, want only %v", op, tt.name, err, sentinel, errors.Is(err, sentinel), tt.want)
					}
				}
				if _, ok := serverError(err); !ok {
					t.Errorf("%s with %s = %v, which lost the server's error", op, tt.name, err)
				}
			}
		}
	})
	t.Run("server unreachable", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.User, cfg.DBName = "tcp", addr, "root", "x"
		cfg.Timeout = time.Second
		db := openDB(t, cfg.FormatDSN())
		s, err := New(db, Config{})
		if err != nil {
			t.Fatal(err)
		}
		_, claimErr := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 1, Lease: time.Second})
		for name, err := range map[string]error{
			"Claim":         claimErr,
			"MarkDelivered": s.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "a", IDs: []string{outbox.NewID()}}),
			"Ping":          s.Ping(ctx),
			"Migrate":       s.Migrate(ctx),
		} {
			if !errors.Is(err, outbox.ErrUnavailable) {
				t.Errorf("%s with no server = %v, want ErrUnavailable", name, err)
			}
		}
	})
}
