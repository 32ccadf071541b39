package mysqlstore

// Adversarial interleavings against the lane-based store on the real
// server (MariaDB). Each test says which promise it probes and how it
// orders the sessions: with a driver wrapper that freezes one relay's
// connection just before a chosen statement (what a relay paused by GC, a
// VM migration or SIGSTOP, or a host that vanished, looks like to the
// server: an idle session, possibly inside a transaction), and with
// transactions held open by the test.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	outbox "github.com/txoutbox/txoutbox/core"
)

// freezer freezes the connections of one pool: the first statement whose
// text contains match (a query, an exec or a prepare) blocks, without
// looking at its context, until release is called; frozen is closed when
// it blocks.
type freezer struct {
	mu      sync.Mutex
	match   string
	fired   bool
	frozen  chan struct{}
	thawed  chan struct{}
	release func()
}

func newFreezer() *freezer {
	f := &freezer{frozen: make(chan struct{}), thawed: make(chan struct{})}
	var once sync.Once
	f.release = func() { once.Do(func() { close(f.thawed) }) }
	return f
}

// arm makes the next statement containing match freeze.
func (f *freezer) arm(match string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.match = match
}

func (f *freezer) check(query string) {
	f.mu.Lock()
	hit := !f.fired && f.match != "" && strings.Contains(query, f.match)
	if hit {
		f.fired = true
	}
	f.mu.Unlock()
	if hit {
		close(f.frozen)
		<-f.thawed
	}
}

type freezeConnector struct {
	driver.Connector
	f *freezer
}

func (c *freezeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &freezeConn{Conn: conn, f: c.f}, nil
}

// freezeConn forwards everything database/sql uses of a mysql connection.
type freezeConn struct {
	driver.Conn
	f *freezer
}

func (c *freezeConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *freezeConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.f.check(query)
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c *freezeConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) == 0 { // with arguments the driver declines (ErrSkip) and database/sql prepares
		c.f.check(query)
	}
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *freezeConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 0 {
		c.f.check(query)
	}
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *freezeConn) Ping(ctx context.Context) error { return c.Conn.(driver.Pinger).Ping(ctx) }

func (c *freezeConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *freezeConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }

func (c *freezeConn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

// openFrozen opens dsn through a freezer.
func openFrozen(t testing.TB, dsn string) (*sql.DB, *freezer) {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = &mysql.NopLogger{}
	inner, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := newFreezer()
	db := sql.OpenDB(&freezeConnector{Connector: inner, f: f})
	db.SetMaxOpenConns(8)
	t.Cleanup(func() {
		f.release()
		_ = db.Close()
	})
	return db, f
}

// laneOf returns the state of lane id in s, as SyncLanes of a bystander
// sees it.
func laneState(t testing.TB, ctx context.Context, s *Store, id int) (outbox.LaneState, time.Time) {
	t.Helper()
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "attack-observer", Lease: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return view.Lanes[id], view.Now
}

// waitExpired waits (on the database clock) until lane id's lease ran out.
func waitExpired(t testing.TB, ctx context.Context, s *Store, id int) outbox.LaneState {
	t.Helper()
	var st outbox.LaneState
	poll(t, ctx, "the lease to expire", func() bool {
		var now time.Time
		st, now = laneState(t, ctx, s, id)
		return !st.Until.After(now)
	})
	return st
}

// TestAttackZombieMidSettleBlocksTakeover probes promises 4 and 7.
//
// Interleaving: relay A holds the only lane and settles a retry, which
// Settle writes in a transaction that first takes a shared lock on the lane
// row (settleTx: SELECT ... LOCK IN SHARE MODE), then runs the UPDATE of the
// retries in a second round trip. A freezes between the two (a GC or
// SIGSTOP pause, a VM migration, or its host vanishing: the server sees an
// idle session inside a transaction, and keeps its locks). A's lease runs
// out. Relay B sees the lane expired and calls TakeLanes, whose SELECT ...
// FOR UPDATE waits for A's shared lock: B cannot take the lane for as long
// as A stays frozen, which nothing bounds (no idle-transaction timeout is
// set on the store's sessions; MariaDB's wait_timeout is 8 hours by
// default, and TCP keepalive notices a vanished host after 2 hours). The
// zombie does not merely publish duplicates: it stops its lanes' delivery
// for the length of its pause, and B's TakeLanes session sits in lock
// waits (innodb_lock_wait_timeout, retried 5 times) meanwhile, holding the
// X locks of any lower lanes it asked for too.
//
// Expected (promise 7): B takes the expired lane within a bounded time
// (here 3 s after expiry, well over the relay's ReadTimeout for a 2 s
// lease would be 1 s). Fix: never hold a lock across round trips in a
// relay's transactions: write all outcomes of a Settle in one statement (an
// UPDATE ... JOIN lanes, which takes the lane row's shared lock for the
// statement only, as the delivered-only path does), and make TakeLanes one
// round trip; and/or bound what a frozen session can hold with MariaDB's
// idle_transaction_timeout (SET SESSION on the store's connections, a
// multiple of the lease).
func TestAttackZombieMidSettleBlocksTakeover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dsn := testDSN(t, nil)
	db := openDB(t, dsn)
	sb := newStore(t, db, Config{Lanes: 1})
	zdb, freeze := openFrozen(t, dsn)
	sa, err := New(zdb, Config{})
	if err != nil {
		t.Fatal(err)
	}

	enqueue(t, ctx, db, sb, keyed("t", "k", 2)...)
	view, err := sa.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lanes, err := sa.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Second, Lanes: []outbox.Lane{view.Lanes[0].Lane}})
	if err != nil || len(lanes) != 1 {
		t.Fatalf("A takes the lane: %v, %v", lanes, err)
	}
	recs := readOK(t, ctx, sa, lanes, 10)

	freeze.arm("o.attempts = o.attempts + 1")
	settled := make(chan error, 1)
	go func() {
		settled <- sa.Settle(context.WithoutCancel(ctx), outbox.SettleParams{Lanes: lanes,
			Retries: []outbox.Retry{{ID: recs[0].ID, Error: "boom", Delay: time.Second}}})
	}()
	select {
	case <-freeze.frozen:
	case err := <-settled:
		t.Fatalf("Settle finished without reaching the retries' UPDATE: %v", err)
	}
	st := waitExpired(t, ctx, sb, 0)

	tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
	start := time.Now()
	taken, err := sb.TakeLanes(tctx, outbox.TakeParams{Owner: "b", Lease: time.Minute, Lanes: []outbox.Lane{st.Lane}, Charge: 10})
	tcancel()
	waited := time.Since(start)
	freeze.release()
	if serr := <-settled; serr != nil {
		t.Logf("the zombie's Settle after thawing: %v", serr)
	}
	if err != nil || len(taken) != 1 {
		t.Errorf("BUG (promises 4, 7): relay B could not take the expired lane of a relay frozen inside Settle's transaction: "+
			"TakeLanes = %v, %v after %v (it waits on the zombie's LOCK IN SHARE MODE of the lane row for as long as the zombie stays frozen)",
			taken, err, waited.Round(time.Millisecond))
	}
	// Once thawed, the zombie's retry must have changed nothing if B took the lane.
	if len(taken) == 1 {
		var attempts int
		if err := db.QueryRowContext(ctx, "SELECT attempts FROM "+sb.table+" WHERE id = ?", recs[0].ID).Scan(&attempts); err != nil {
			t.Fatal(err)
		}
		if attempts != 1 { // the takeover's charge only
			t.Errorf("after the takeover the record has %d attempts, want 1 (the charge): the zombie's late retry was applied", attempts)
		}
	}
}

// TestAttackFrozenTakeLocksLanesItDidNotTake probes promise 7 and lane
// renewal.
//
// Interleaving: relay A holds lane 0 with a live lease. Relay B, from a
// view in which lane 0 looked expired (A renewed just after B's
// SyncLanes), calls TakeLanes for lanes 0 and 1. Its SELECT ... FOR UPDATE
// locks both rows (the WHERE names the lanes only, so the rows are locked
// before the epoch and the lease are checked), it finds lane 0 held and
// takes lane 1 only; then B freezes before its UPDATE. A's next heartbeat
// (SyncLanes) must renew lane 0, but its UPDATE waits for B's X lock on a
// lane B did not even take; and A's delivered-only Settle of lane 0 waits
// as well (its join takes a shared lock on the lane row). A loses the lane
// it holds to a relay that is frozen and never wanted it.
//
// Expected: SyncLanes renews A's lane without waiting on B. Fix: filter in
// the locking read (WHERE lane IN (...) AND epoch = ... AND (owner is empty OR
// lease_until <= now)), under READ COMMITTED InnoDB then releases the locks
// of rows that do not match; better, make TakeLanes one round trip (a
// single UPDATE ... WHERE lane IN ... AND epoch match AND free/expired,
// then read the new epochs back) so that no lock outlives a statement.
func TestAttackFrozenTakeLocksLanesItDidNotTake(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dsn := testDSN(t, nil)
	db := openDB(t, dsn)
	sa := newStore(t, db, Config{Lanes: 2})
	bdb, freeze := openFrozen(t, dsn)
	sb, err := New(bdb, Config{})
	if err != nil {
		t.Fatal(err)
	}

	view, err := sa.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	held, err := sa.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Minute, Lanes: []outbox.Lane{view.Lanes[0].Lane}})
	if err != nil || len(held) != 1 {
		t.Fatalf("A takes lane 0: %v, %v", held, err)
	}
	// B's stale view: lane 0 at A's epoch (expired, B thought), lane 1 free.
	stale := []outbox.Lane{held[0], view.Lanes[1].Lane}

	freeze.arm("SET owner = ?, epoch = epoch + 1")
	took := make(chan error, 1)
	go func() {
		_, err := sb.TakeLanes(context.WithoutCancel(ctx), outbox.TakeParams{Owner: "b", Lease: time.Minute, Lanes: stale})
		took <- err
	}()
	select {
	case <-freeze.frozen:
	case err := <-took:
		t.Fatalf("TakeLanes finished without reaching its UPDATE: %v", err)
	}

	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	start := time.Now()
	v, err := sa.SyncLanes(sctx, outbox.SyncParams{Owner: "a", Lease: time.Minute, Held: held})
	scancel()
	waited := time.Since(start)
	freeze.release()
	if terr := <-took; terr != nil {
		t.Logf("B's TakeLanes after thawing: %v", terr)
	}
	if err != nil {
		t.Fatalf("BUG (promise 7): A's heartbeat could not renew lane 0, which A holds, while relay B, frozen in a TakeLanes that did not take lane 0, "+
			"holds its row locked (SELECT ... FOR UPDATE locks every lane asked for before checking epoch and lease): SyncLanes = %v after %v",
			err, waited.Round(time.Millisecond))
	}
	if v.Lanes[0].Owner != "a" {
		t.Fatalf("lane 0 is %+v, want still held by a", v.Lanes[0])
	}
}

// TestAttackSettleRacesTakeoverIsFenced probes promise 4 at the one place
// where MariaDB could let a late settle through: the delivered-only Settle
// is one autocommitted DELETE (with Retain, an UPDATE) joining the lanes
// table, without an explicit lock on the lane row. The test makes the
// takeover commit between the statement's start and its write of the
// record, with and without Retain:
//
//   - lane 1 holds r0 (the smaller ID), lane 0 holds r1; A holds both;
//   - a third session locks r0 (SELECT ... FOR UPDATE);
//   - A settles r0 and r1 delivered: the statement starts, walks by_id in ID
//     order and waits on r0;
//   - A's lease of lane 0 runs out and B takes lane 0 (TakeLanes commits,
//     charging r1);
//   - the third session rolls back; A's statement goes on to r1.
//
// In a multi-table UPDATE or DELETE InnoDB reads the lanes table with
// shared locks (current reads), so the join sees B's epoch and leaves r1
// alone: r1 must stay pending. (PostgreSQL's Settle reads the epochs from its statement
// snapshot instead; see stores/postgres/attack_test.go.)
func TestAttackSettleRacesTakeoverIsFenced(t *testing.T) {
	t.Parallel()
	for _, retain := range []bool{false, true} {
		t.Run(fmt.Sprintf("retain=%v", retain), func(t *testing.T) { attackSettleRacesTakeover(t, retain) })
	}
}

func attackSettleRacesTakeover(t *testing.T, retain bool) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{Lanes: 2})

	// r0 in lane 1 and r1 in lane 0, with r0's ID sorting first.
	var m0, m1 outbox.Message
	for {
		m0 = outbox.Message{ID: outbox.NewID(), Topic: "t"}
		m1 = outbox.Message{ID: outbox.NewID(), Topic: "t"}
		if outbox.LaneOf("", m0.ID, 2) == 1 && outbox.LaneOf("", m1.ID, 2) == 0 && m0.ID < m1.ID {
			break
		}
	}
	enqueue(t, ctx, db, s, m0, m1)

	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a0, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Second, Lanes: []outbox.Lane{view.Lanes[0].Lane}})
	if err != nil || len(a0) != 1 {
		t.Fatalf("A takes lane 0: %v, %v", a0, err)
	}
	a1, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Hour, Lanes: []outbox.Lane{view.Lanes[1].Lane}})
	if err != nil || len(a1) != 1 {
		t.Fatalf("A takes lane 1: %v, %v", a1, err)
	}
	lanes := append(a0, a1...)

	hold, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback() }()
	if _, err := hold.ExecContext(ctx, "SELECT id FROM "+s.table+" WHERE id = ? FOR UPDATE", m0.ID); err != nil {
		t.Fatal(err)
	}
	var conn *sql.Conn
	conn, err = db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	settled := make(chan error, 1)
	go func() {
		settled <- s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{m0.ID, m1.ID}, Retain: retain})
	}()
	// Wait until the settle waits on r0's lock.
	poll(t, ctx, "the settle to wait on r0", func() bool {
		select {
		case err := <-settled:
			t.Fatalf("the settle did not wait for r0's lock: %v", err)
		default:
		}
		var n int
		err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE '%STRAIGHT_JOIN%'").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	st := waitExpired(t, ctx, s, 0)
	taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: time.Hour, Lanes: []outbox.Lane{st.Lane}, Charge: 10})
	if err != nil || len(taken) != 1 {
		t.Fatalf("B takes lane 0 while A's settle waits: %v, %v", taken, err)
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-settled; err != nil {
		t.Fatal(err)
	}
	// state: 2 delivered, 0 pending, -1 gone (deleted).
	var state0, state1 int
	if err := db.QueryRowContext(ctx, "SELECT "+
		"COALESCE((SELECT state FROM "+s.table+" WHERE id = ?), -1), COALESCE((SELECT state FROM "+s.table+" WHERE id = ?), -1)",
		m0.ID, m1.ID).Scan(&state0, &state1); err != nil {
		t.Fatal(err)
	}
	if want := map[bool]int{false: -1, true: 2}[retain]; state0 != want {
		t.Errorf("r0 (lane 1, still A's) is in state %d after the settle; want %d", state0, want)
	}
	if state1 != 0 {
		t.Errorf("promise 4: A's settle, whose statement began before B took lane 0, settled r1 after the takeover (state %d, want 0: pending)", state1)
	}
}
