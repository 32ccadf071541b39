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
// sessions are killed (KILL CONNECTION): first while TakeLanes waits for the
// lane rows, then at random moments while writers keep writing. Nothing
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
		cfg.Lease = 2 * time.Second // lanes of a relay that lost its session come back soon
		cfg.PublishTimeout = time.Second
		cfg.Logger = slog.New(slog.DiscardHandler) // the failures are the point; the ledger is the verdict
		conformance.StartRelay(t, relayStore, b.Publisher, cfg)
	}

	// 1. Kill the sessions of TakeLanes calls that wait for the lane rows.
	hold, err := admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, "SELECT lane FROM "+relayStore.lanes+" FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	ledger.Committed(enqueue(t, ctx, writerDB, writer, keyed(topic, "before", 50)...)...)
	for range 3 {
		var waiting []int64
		poll(t, ctx, "a TakeLanes waiting for the lane rows", func() bool {
			waiting = takesWaiting(t, ctx, admin, sessions.sessions())
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

// takesWaiting returns the sessions among ids whose TakeLanes (its UPDATE
// of the lane rows) is running: waiting for the rows the test holds.
func takesWaiting(t *testing.T, ctx context.Context, admin *sql.DB, ids []int64) []int64 {
	t.Helper()
	if len(ids) == 0 {
		return nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = fmt.Sprint(id)
	}
	rows, err := admin.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ("+
		strings.Join(list, ",")+") AND INFO LIKE '%\\_lanes` FORCE INDEX (PRIMARY) SET owner = %'")
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

// TestDeadlockInTakeLanesIsRetried makes InnoDB pick a TakeLanes as the
// victim of a deadlock; it must be retried and succeed, and charge the
// records of the lanes it took from an expired owner once.
//
// TakeLanes is one UPDATE of the lane rows, which locks them in lane
// order: another transaction holds the higher lane, the UPDATE locks the
// lower one and waits, and the other transaction then asks for the lower
// one: a cycle, within the UPDATE's single statement.
func TestDeadlockInTakeLanesIsRetried(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dsn := testDSN(t, nil)
	db := openDB(t, dsn)
	s := newStore(t, db, Config{})
	msgs := enqueue(t, ctx, db, s, keyed("t", "k", 10)...)
	lane := outbox.LaneOf("k", "", outbox.DefaultLanes)
	low, high := lane, lane+1
	if lane == outbox.DefaultLanes-1 {
		low, high = lane-1, lane
	}

	// A relay takes both lanes and lets its lease expire: the next taker
	// charges the lanes' first records.
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "gone", Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "gone", Lease: time.Millisecond,
		Lanes: []outbox.Lane{view.Lanes[low].Lane, view.Lanes[high].Lane}})
	if err != nil || len(gone) != 2 {
		t.Fatalf("TakeLanes = %v, %v", gone, err)
	}
	time.Sleep(20 * time.Millisecond)
	conflicts := make(chan error, 10)
	s.onLockConflict = func(op string, err error) { conflicts <- fmt.Errorf("%s: %w", op, err) }

	// The other transaction is the heavier one (it changed every record),
	// so that InnoDB rolls back the TakeLanes.
	other, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback() }()
	if _, err := other.ExecContext(ctx, "UPDATE "+s.table+" SET last_error = 'changed by another transaction' WHERE seq > 0"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ExecContext(ctx, "SELECT lane FROM "+s.lanes+" WHERE lane = ? FOR UPDATE", high); err != nil {
		t.Fatal(err)
	}

	type result struct {
		lanes []outbox.Lane
		err   error
	}
	done := make(chan result, 1)
	go func() {
		lanes, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Hour, Lanes: gone, Charge: 5})
		done <- result{lanes, err}
	}()
	// Once TakeLanes holds the lower lane and waits for the higher, lock
	// the lower: a cycle.
	poll(t, ctx, "TakeLanes to wait for the higher lane", func() bool {
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"+
			" JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"+
			" WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	if _, err := other.ExecContext(ctx, "SELECT lane FROM "+s.lanes+" WHERE lane = ? FOR UPDATE", low); err != nil {
		t.Fatalf("the other transaction was chosen as the deadlock victim (%v); the test needs TakeLanes to be", err)
	}
	select {
	case err := <-conflicts:
		if n, _ := serverError(err); n != erLockDeadlock {
			t.Fatalf("TakeLanes retried after %v, want a deadlock (1213)", err)
		}
	case r := <-done:
		t.Fatalf("TakeLanes returned %v, %v without a deadlock", r.lanes, r.err)
	}
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("TakeLanes after a deadlock: %v", r.err)
	}
	if len(r.lanes) != 2 || r.lanes[0] != (outbox.Lane{ID: low, Epoch: gone[0].Epoch + 1}) || r.lanes[1] != (outbox.Lane{ID: high, Epoch: gone[1].Epoch + 1}) {
		t.Fatalf("TakeLanes after a deadlock = %v, want lanes %d and %d at epochs %d and %d", r.lanes, low, high, gone[0].Epoch+1, gone[1].Epoch+1)
	}
	recs := readOK(t, ctx, s, r.lanes, 20)
	if len(recs) != len(msgs) {
		t.Fatalf("read %d records, want %d", len(recs), len(msgs))
	}
	for i, rec := range recs {
		want := 0
		if i < 5 {
			want = 1
		}
		if rec.ID != msgs[i].ID || rec.Attempts != want || rec.LastError != "changed by another transaction" {
			t.Fatalf("record %d = %s with %d attempts and error %q; want %s charged %d, as the other transaction left it", i, rec.ID, rec.Attempts, rec.LastError, msgs[i].ID, want)
		}
	}
}

// TestLockWaitTimeoutIsRetried holds a lock on a record past the session's
// innodb_lock_wait_timeout: Settle retries and succeeds once the lock goes;
// a lock that never goes is reported, wrapped.
func TestLockWaitTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dsn := testDSN(t, func(c *mysql.Config) { c.Params["innodb_lock_wait_timeout"] = "1" })
	db := openDB(t, dsn)
	s := newStore(t, db, Config{})
	enqueue(t, ctx, db, s, keyed("t", "a", 1)...)
	enqueue(t, ctx, db, s, keyed("t", "b", 1)...)
	lanes := holdAll(t, ctx, s, "owner")
	recs := readOK(t, ctx, s, lanes, 10)
	if len(recs) != 2 {
		t.Fatalf("read %d, want 2", len(recs))
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
			done <- s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[0].ID}})
		}()
		err := <-conflicts
		if n, _ := serverError(err); n != erLockWaitTimeout {
			t.Fatalf("retried after %v, want a lock wait timeout (1205)", err)
		}
		if err := hold.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Settle after a lock wait timeout: %v", err)
		}
	})
	t.Run("held", func(t *testing.T) {
		hold := lockRecord(recs[1].ID)
		defer func() { _ = hold.Rollback() }()
		err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[1].ID}})
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != erLockWaitTimeout || !strings.Contains(err.Error(), "gave up after 5 lock conflicts") {
			t.Fatalf("Settle with the record locked throughout = %v; want the lock wait timeout, wrapped, after 5 tries", err)
		}
	})
	if got, _ := s.ListDead(ctx, outbox.ListDeadParams{}); len(got) != 0 {
		t.Fatalf("dead letters appeared: %v", got)
	}
	if rest := readOK(t, ctx, s, lanes, 10); len(rest) != 1 || rest[0].ID != recs[1].ID {
		t.Fatalf("read %v; want only the second record, the first is delivered", recordIDs(rest))
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
		_, syncErr := s.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Second})
		_, readErr := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1})
		_, statsErr := s.Stats(ctx)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		enqueueErr := s.Enqueue(ctx, tx, outbox.Message{Topic: "t"})
		for name, err := range map[string]error{"SyncLanes": syncErr, "Read": readErr, "Stats": statsErr, "Enqueue": enqueueErr} {
			if !errors.Is(err, outbox.ErrSchemaMissing) {
				t.Errorf("%s without Migrate = %v, want ErrSchemaMissing", name, err)
			}
		}
		if !strings.Contains(enqueueErr.Error(), "Migrate") {
			t.Errorf("Enqueue without Migrate = %v; want it to say to run Migrate", enqueueErr)
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
			_, syncErr := s.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Second})
			_, statsErr := s.Stats(ctx)
			_, listErr := s.ListDead(ctx, outbox.ListDeadParams{Limit: 1})
			for op, err := range map[string]error{"SyncLanes": syncErr, "Stats": statsErr, "ListDead": listErr, "Ping": s.Ping(ctx), "Migrate": s.Migrate(ctx)} {
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
		_, readErr := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1})
		_, takeErr := s.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Second, Lanes: []outbox.Lane{{ID: 0}}})
		for name, err := range map[string]error{
			"Read":      readErr,
			"TakeLanes": takeErr,
			"Settle":    s.Settle(ctx, outbox.SettleParams{Lanes: []outbox.Lane{{ID: 0}}, Delivered: []string{outbox.NewID()}}),
			"Ping":      s.Ping(ctx),
			"Migrate":   s.Migrate(ctx),
		} {
			if !errors.Is(err, outbox.ErrUnavailable) {
				t.Errorf("%s with no server = %v, want ErrUnavailable", name, err)
			}
		}
	})
}
