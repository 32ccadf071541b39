package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// namedPool returns a pool whose connections carry application_name name,
// so that a test can find and terminate exactly them, with an empty
// search_path like pgserver.Pool, adjusted by tune.
func namedPool(t testing.TB, name string, tune ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgserver.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	for _, f := range tune {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// terminate kills the server processes of the connections named name that
// match where (an SQL condition on pg_stat_activity), and returns how many.
func terminate(t testing.TB, ctx context.Context, pool *pgxpool.Pool, name, where string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid() AND (`+where+`)`, name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// shortLeases is a relay configuration whose leases expire quickly, so that
// lanes whose relay lost its connection are taken over soon.
func shortLeases(t testing.TB, owner string) outbox.RelayConfig {
	cfg := conformance.TestRelayConfig(t)
	cfg.Owner = owner
	cfg.Lease = 3 * time.Second
	cfg.PublishTimeout = time.Second
	cfg.Logger = slog.New(slog.DiscardHandler) // the failures are the point
	return cfg
}

// Relays whose connections are killed again and again while writers write
// lose nothing and keep per-key order: a take or a settle that dies before
// its commit changed nothing; lanes whose renewals fail expire and are
// taken over; a record whose settle was lost is published again (a counted
// duplicate).
func TestRelaySurvivesKilledConnections(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, writers := testStore(t, Config{})
	appName := "pgstore-kill-" + s.Config().Schema
	relayStore, err := New(namedPool(t, appName), s.Config())
	if err != nil {
		t.Fatal(err)
	}

	b := conformance.MemoryBroker().New(t)
	topic := b.Topic(t)
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, b, ledger, topic)
	for i := range 2 {
		conformance.StartRelay(t, relayStore, b.Publisher, shortLeases(t, fmt.Sprintf("relay-%d", i)))
	}

	// The killer terminates every connection of the relays' pool (their
	// listener included) every 20 to 100ms while the writers write (a
	// transaction every 5ms each, so that the relays keep working for a
	// while).
	killed := 0
	stopKilling := make(chan struct{})
	var killer sync.WaitGroup
	killer.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stopKilling:
				return
			case <-time.After(time.Duration(20+rng.IntN(80)) * time.Millisecond):
			}
			killed += terminate(t, ctx, writers, appName, "true")
		}
	})

	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			ob := outboxOf(s, writers)
			for i := range 150 {
				msgs := []outbox.Message{
					{Topic: topic, Key: fmt.Sprintf("w%d-k%d", w, i%7), Payload: []byte(fmt.Sprint(i))},
					{Topic: topic, Key: fmt.Sprintf("w%d-k%d", w, (i+1)%7), Payload: []byte(fmt.Sprint(i))},
				}
				tx, err := ob.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if err := tx.Enqueue(ctx, msgs...); err != nil {
					t.Error(err)
					return
				}
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
				ledger.Committed(msgs...)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(stopKilling)
	killer.Wait()
	err = ledger.WaitAll(ctx)
	rep := ledger.Report()
	t.Logf("%d connections killed: %s", killed, rep)
	if err != nil {
		t.Fatalf("%v; %s", err, rep)
	}
	if !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
	if killed < 10 {
		t.Fatalf("only %d connections were killed; the test proved little", killed)
	}
}

// A TakeLanes whose connection is killed while it waits for the lane rows,
// inside its transaction, takes nothing; the relay reconnects, takes the
// lanes and delivers everything, without duplicates.
func TestTakeKilledMidTake(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 8})
	appName := "pgstore-midtake-" + s.Config().Schema
	relayStore, err := New(namedPool(t, appName), s.Config())
	if err != nil {
		t.Fatal(err)
	}
	b := conformance.MemoryBroker().New(t)
	topic := b.Topic(t)
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, b, ledger, topic)

	// Lock the lane rows, so that the relay's take blocks halfway.
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, "SELECT FROM "+s.names.qualLanes+" FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	ob := outboxOf(s, pool)
	for i := range 5 {
		msgs := []outbox.Message{{Topic: topic, Key: "k"}, {Topic: topic, Key: fmt.Sprint(i)}}
		tx, _ := ob.Begin(ctx)
		if err := tx.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ledger.Committed(msgs...)
	}
	conformance.StartRelay(t, relayStore, b.Publisher, shortLeases(t, "relay"))

	var killed int
	for killed == 0 {
		if ctx.Err() != nil {
			t.Fatal("the relay's take never waited for the lane rows")
		}
		killed = terminate(t, ctx, pool, appName, "wait_event_type = 'Lock'")
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("after %d takes were killed mid-take: %v; %s", killed, err, ledger.Report())
	}
	if rep := ledger.Report(); !rep.Clean() || rep.Duplicates != 0 {
		t.Fatalf("ledger: %s; a take killed before its commit must not cause duplicates", rep)
	}
}

// The listener reconnects when its connection is killed, and gives up
// (closing its channel) when it cannot.
func TestListenReconnects(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	appName := "pgstore-listen-" + s.Config().Schema
	listenPool := namedPool(t, appName)
	ls, err := New(listenPool, s.Config())
	if err != nil {
		t.Fatal(err)
	}
	ls.listen.minBackoff, ls.listen.maxBackoff, ls.listen.retries = 10*time.Millisecond, 50*time.Millisecond, 3
	ls.listen.idle = 100 * time.Millisecond // exercise the idle check too

	ch, err := ls.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listening := func() int {
		var pid int
		err := pool.QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
WHERE application_name = $1 AND query LIKE 'LISTEN %'`, appName).Scan(&pid)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	first := listening()
	if first == 0 {
		t.Fatal("no connection is listening")
	}
	if terminate(t, ctx, pool, appName, "query LIKE 'LISTEN %'") != 1 {
		t.Fatal("could not kill the listener")
	}
	for pid := listening(); pid == 0 || pid == first; pid = listening() {
		if ctx.Err() != nil {
			t.Fatal("the listener did not reconnect")
		}
	}
	// Still wired: a commit wakes the channel.
	woken := false
	for !woken {
		if err := enqueueCommitted(ctx, pool, s, outbox.Message{Topic: "t"}); err != nil {
			t.Fatal(err)
		}
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatal("the channel closed after a reconnection")
			}
			woken = true
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no wake-up after the listener reconnected")
		}
	}

	// With the pool closed it cannot reconnect: it gives up and says so by
	// closing the channel.
	listenPool.Close()
	terminate(t, ctx, pool, appName, "query LIKE 'LISTEN %'")
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-ctx.Done():
			t.Fatal("the channel stayed open although the listener cannot reconnect")
		}
	}
}
