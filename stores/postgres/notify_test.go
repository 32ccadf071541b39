package pgstore

import (
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Within a NotifyInterval only the first Enqueue notifies in its
// transaction; the others are woken by one notification sent outside any
// transaction when the interval ends. The interval is an hour here, so
// that nothing but the test fires the end of it.
func TestNotifyIntervalLeavesLaterWakeUpsToOneNotification(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{NotifyInterval: time.Hour})
	listener := listenOn(ctx, t, pool, s.Channel())
	marker := func() {
		t.Helper()
		if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'marker')", s.Channel()); err != nil {
			t.Fatal(err)
		}
	}
	next := func(want, why string) {
		t.Helper()
		n, err := listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Payload != want {
			t.Fatalf("notification %q; want %q: %s", n.Payload, want, why)
		}
	}

	// The first Enqueue notifies in its transaction: its notification
	// comes with its commit, after a marker sent before that commit.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	marker()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	next("marker", "the marker was committed first")
	next("", "the first Enqueue of an interval notifies with its commit")

	// The next ones, pgx and database/sql alike, do not: a marker sent
	// after their commits is the next notification.
	if err := enqueueCommitted(ctx, pool, s, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	sqlTx, err := sqlDB(t, pool).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlTx.Rollback()
	if err := s.EnqueueSQL(ctx, sqlTx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := sqlTx.Commit(); err != nil {
		t.Fatal(err)
	}
	marker()
	next("marker", "Enqueues within the interval leave their wake-up to the end of the interval")

	// A Store made per request shares the interval: its first Enqueue
	// does not notify in its transaction either.
	again, err := New(pool, Config{Schema: s.Config().Schema, NotifyInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := enqueueCommitted(ctx, pool, again, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	marker()
	next("marker", "a second Store on the same pool and table shares the interval")

	// The end of the interval sends one notification, outside any
	// transaction.
	s.notify.mu.Lock()
	due := s.notify.trailing
	s.notify.mu.Unlock()
	if !due {
		t.Fatal("no notification is due at the end of the interval, though Enqueues left their wake-up to it")
	}
	s.notify.fire()
	next("", "the end of the interval notifies")
}

// A fire that comes while a notification is being sent (the pool slow to
// hand out a connection) sends once more after it, rather than running a
// second send alongside.
func TestNotifierSendsOneAtATime(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}, 4), make(chan struct{})
	n := &notifier{interval: time.Hour, send: func() {
		started <- struct{}{}
		<-release
	}}
	done := make(chan struct{})
	go func() { n.fire(); close(done) }()
	<-started
	n.fire() // returns at once: one send is running
	select {
	case <-started:
		t.Fatal("a second send ran alongside the first")
	default:
	}
	release <- struct{}{} // the first send ends; the fire that came meanwhile sends again
	<-started
	release <- struct{}{}
	<-done
	if len(started) != 0 {
		t.Fatalf("%d sends more than the two fires asked for", len(started))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sending || n.again {
		t.Fatalf("after the sends: sending %v, again %v; want both false", n.sending, n.again)
	}
}

// A negative interval makes every Enqueue notify in its transaction, and
// the first Enqueue of a store always does.
func TestNotifierInTx(t *testing.T) {
	t.Parallel()
	every := &notifier{interval: -1, send: func() { t.Error("a negative interval sends nothing outside transactions") }}
	for i := range 3 {
		if !every.inTx() {
			t.Fatalf("call %d: with a negative interval every Enqueue notifies in its transaction", i)
		}
	}
	sent := make(chan struct{}, 1)
	n := &notifier{interval: time.Hour, send: func() { sent <- struct{}{} }}
	if !n.inTx() {
		t.Fatal("the first Enqueue of a store notifies in its transaction")
	}
	for i := range 2 {
		if n.inTx() {
			t.Fatalf("Enqueue %d within the interval notifies in its transaction", i+2)
		}
	}
	n.mu.Lock()
	due := n.trailing
	n.mu.Unlock()
	if !due {
		t.Fatal("no notification is due at the end of the interval")
	}
	n.fire()
	<-sent
}
