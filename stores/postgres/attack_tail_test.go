package pgstore

// Adversarial interleavings against the log-tailing mode (Config.Tail) on
// the real server: the stream's position, its fence and its handovers.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance/ledger"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// tailEnqueue commits msgs in one transaction of the tailing store s.
func tailEnqueue(t *testing.T, ctx context.Context, s *Store, msgs ...outbox.Message) {
	t.Helper()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := s.Enqueue(ctx, tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func tailMsg(key, payload string) outbox.Message {
	return outbox.Message{ID: outbox.NewID(), Topic: "t", Key: key, Payload: []byte(payload)}
}

// nextRecords takes records from st until it has n of them.
func nextRecords(t *testing.T, ctx context.Context, st outbox.LogStream, n int) []outbox.LogRecord {
	t.Helper()
	var out []outbox.LogRecord
	for len(out) < n {
		recs, err := st.Next(ctx, n-len(out))
		if err != nil {
			t.Fatalf("Next after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

// TestAttackTailCloseReportsAckedPosition probes bounded duplicates
// (promise 4: a duplicate only follows a crash, a lost acknowledgement or
// an expired lease): a relay that acknowledged a record and then gives the
// log up cleanly must not leave that record to the next holder.
//
// Interleaving: A streams m1, acknowledges it and closes at once, before
// its receiver's next status report (reports go at most every
// ackInterval, when the receiver wakes). B takes the slot; m2 is
// committed; B's first record must be m2. Before the fix, Close ended the
// receiver without reporting, so the slot stayed before m1 and B published
// it again.
func TestAttackTailCloseReportsAckedPosition(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	p := outbox.TailParams{Owner: "a", Lease: 20 * time.Second}

	m1 := tailMsg("k", "m1")
	tailEnqueue(t, ctx, s, m1)
	a, err := s.TailLog(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got := nextRecords(t, ctx, a, 1)
	if got[0].ID != m1.ID || got[0].Checkpoint == 0 {
		t.Fatalf("A read %+v, want m1 with its checkpoint", got[0])
	}
	a.Ack(got[0].Checkpoint)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	p.Owner = "b"
	b, err := s.TailLog(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m2 := tailMsg("k", "m2")
	tailEnqueue(t, ctx, s, m2)
	got = nextRecords(t, ctx, b, 1)
	if got[0].ID != m2.ID {
		t.Fatalf("B read %s first (m1 %s, m2 %s): A's acknowledgement of m1 was lost when it closed", got[0].Payload, m1.ID, m2.ID)
	}
}

// TestAttackTailFullBufferKeepsTheSlot probes the hold of a relay that
// streams a backlog: while its buffer is full (the broker slower than the
// log) the receiver stops reading the socket, so it no longer sees the
// walsender's requests for a reply, and only its own periodic reports keep
// the walsender from ending the connection after wal_sender_timeout (the
// lease). Before the fix it reported every statusInterval (1 s) whatever
// the lease, so with a lease of a second the walsender dropped a relay
// that renewed its hold all along, and a standby took the log from it.
//
// Interleaving: more than maxBuffered records are committed in one
// transaction; the relay takes the stream with a lease of 1 s (the
// smallest wal_sender_timeout the stream sets), renews it, and does not
// call Next until the walsender's timeout has passed three times over.
// The stream must still hold the slot.
func TestAttackTailFullBufferKeepsTheSlot(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	msgs := make([]outbox.Message, maxBuffered+10)
	for i := range msgs {
		msgs[i] = tailMsg("", "")
	}
	tailEnqueue(t, ctx, s, msgs...)
	lease := time.Second
	ls, err := s.TailLog(ctx, outbox.TailParams{Owner: "a", Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	st := ls.(*stream)
	full := func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.buf) >= maxBuffered
	}
	for !full() {
		st.Renew()
		select {
		case <-st.done:
			t.Fatal("the stream ended before its buffer filled")
		case <-time.After(10 * time.Millisecond):
		}
	}
	for range 3 * 4 {
		st.Renew()
		time.Sleep(lease / 4)
	}
	var pid *int32
	if err := s.pool.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, s.Slot()).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if pid == nil || int(*pid) != st.pid {
		st.mu.Lock()
		defer st.mu.Unlock()
		t.Fatalf("the slot is held by %v, not by the stream's walsender %d, which ended with: %v", pid, st.pid, st.err)
	}
	got := nextRecords(t, ctx, st, len(msgs))
	if got[len(got)-1].Checkpoint == 0 {
		t.Fatal("the last record has no checkpoint")
	}
}

// TestAttackTailIdleConfirmPastOpenTransaction probes at-least-once
// (promise 2) against the idle stream's confirmation of the server's WAL
// end: a transaction T1 writes m1 to the WAL and stays open while other
// transactions commit, so the walsender reads and reports positions past
// m1. The stream, idle, confirms them; the relay then closes. m1 must
// still come when T1 commits, to the next holder: the slot skips a
// transaction by its commit, not by where its messages are.
func TestAttackTailIdleConfirmPastOpenTransaction(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	p := outbox.TailParams{Owner: "a", Lease: 20 * time.Second}
	a, err := s.TailLog(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t1, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Rollback(ctx)
	m1 := tailMsg("k", "m1")
	if err := s.Enqueue(ctx, t1, m1); err != nil {
		t.Fatal(err)
	}
	// Other transactions commit after m1 is in the WAL, and the stream,
	// idle, confirms past them.
	var past string
	for range 3 {
		if _, err := s.pool.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS x(i int); INSERT INTO x VALUES (1)`); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&past); err != nil {
		t.Fatal(err)
	}
	for {
		var beyond bool
		if err := s.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, s.Slot(), past).Scan(&beyond); err != nil {
			t.Fatal(err)
		}
		if beyond {
			break
		}
		if _, err := s.pool.Exec(ctx, `SELECT pg_logical_emit_message(true, 'other', 'x')`); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the idle stream never confirmed past the open transaction's message")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := t1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	p.Owner = "b"
	b, err := s.TailLog(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := nextRecords(t, ctx, b, 1); got[0].ID != m1.ID {
		t.Fatalf("B read %s, want m1", got[0].Payload)
	}
}

// TestAttackTailSavepointRollbackLeavesNothing probes atomicity (promise
// 1): a message enqueued in a savepoint that is rolled back must not be
// published, though it was written to the WAL, while the message of the
// same transaction enqueued after it is.
func TestAttackTailSavepointRollbackLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	gone, kept := tailMsg("k", "gone"), tailMsg("k", "kept")
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, sp, gone); err != nil {
		t.Fatal(err)
	}
	if err := sp.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, tx, kept); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	after := tailMsg("k", "after")
	tailEnqueue(t, ctx, s, after)
	st, err := s.TailLog(ctx, outbox.TailParams{Owner: "a", Lease: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := nextRecords(t, ctx, st, 2)
	if got[0].ID != kept.ID || got[1].ID != after.ID {
		t.Fatalf("read %s then %s, want kept then after", got[0].Payload, got[1].Payload)
	}
}

// TestAttackTailZombieParkIsSeenByTheNewHolder probes the fence of Park
// (LogStream.Park: it writes nothing when the stream no longer holds the
// log) and, through it, the parked keys a new holder starts from.
//
// Park checks that its walsender holds the slot, then inserts, in one
// transaction, but nothing stops the slot from changing hands between
// the two statements. Interleaving: relay A parks r1 (of key k); a third
// session holds an uncommitted row of r1's ID, so A's insert waits on it,
// after A's check passed. A's walsender is terminated (A froze past its
// lease) and B takes the slot and reads the parked keys; then the third
// session rolls back and A's insert commits. Before the fix, A's Park
// succeeded though A had lost the log, and B's parked keys, read before
// it committed, did not have k: B published k's records from the log
// while r1 waited in the table (or, in strict order, a dead letter that
// B delivered held k's later records until someone replayed it).
func TestAttackTailZombieParkIsSeenByTheNewHolder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	la, err := s.TailLog(ctx, outbox.TailParams{Owner: "a", Lease: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	a := la.(*stream)
	r1 := tailMsg("k", "r1")
	r1.CreatedAt = time.Now()

	x, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Rollback(ctx)
	if _, err := x.Exec(ctx, `INSERT INTO `+s.Table()+` (id, lane, topic, payload, created_at) VALUES ($1, 0, 't', '', now())`, r1.ID); err != nil {
		t.Fatal(err)
	}
	parked := make(chan error, 1)
	go func() { parked <- a.Park(ctx, []outbox.Parked{{Record: outbox.Record{Message: r1}, Delay: time.Hour}}) }()
	waitForLockWait(t, ctx, s.pool, "ON CONFLICT (id) DO NOTHING", parked)

	if _, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, a.pid); err != nil {
		t.Fatal(err)
	}
	lb, err := s.TailLog(ctx, outbox.TailParams{Owner: "b", Lease: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	type keysErr struct {
		keys []string
		err  error
	}
	read := make(chan keysErr, 1)
	go func() {
		keys, err := lb.ParkedKeys(ctx, false)
		read <- keysErr{keys, err}
	}()
	// B's read either returns now or waits for A's Park: let it do
	// whichever it does before A's insert can go on.
	var got *keysErr
	for got == nil {
		select {
		case k := <-read:
			got = &k
		case <-time.After(10 * time.Millisecond):
		}
		if got != nil {
			break
		}
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
	}
	if err := x.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	perr := <-parked
	if got == nil {
		k := <-read
		got = &k
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if perr == nil && !slices.Contains(got.keys, "k") {
		t.Fatalf("A parked r1 after it lost the slot, and B, holding it, read the parked keys %v without k", got.keys)
	}
}

// tailCount returns how many rows of key k the table has pending (dead =
// false) or dead (dead = true).
func tailCount(t *testing.T, ctx context.Context, s *Store, k string, dead bool) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+s.Table()+` WHERE key = $1 AND delivered_at IS NULL AND (dead_at IS NOT NULL) = $2`, k, dead).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// tailUntil polls cond until it holds, failing t when ctx ends first.
func tailUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestAttackTailStrictReplayWhileStreaming probes StrictOrder across the
// log and the table: the poison record r1 of key k is dead-lettered from
// the log, r2 and r3 of k, committed after it, are parked behind it (r3
// after r2 was parked, so it comes from the log into a key the stream
// already holds back), nothing of k is published; once r1 is replayed,
// k's records reach the broker in commit order, r4, committed after the
// replay, last.
func TestAttackTailStrictReplayWhileStreaming(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	pub := memory.NewPublisher(memory.PublisherConfig{})
	var poison atomic.Bool
	poison.Store(true)
	pub.SetReject(func(m outbox.Message) error {
		if string(m.Payload) == "r1" && poison.Load() {
			return outbox.Permanent(errors.New("poison"))
		}
		return nil
	})
	r, err := outbox.NewRelay(s, pub, outbox.RelayConfig{
		Owner: "a", StrictOrder: true, PollInterval: 20 * time.Millisecond, MinPollInterval: time.Millisecond,
		Lease: 4 * time.Second, MinRetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError + 1})),
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()

	r1, r2, r3, r4 := tailMsg("k", "r1"), tailMsg("k", "r2"), tailMsg("k", "r3"), tailMsg("k", "r4")
	other := tailMsg("j", "other")
	tailEnqueue(t, ctx, s, r1)
	tailEnqueue(t, ctx, s, r2)
	tailUntil(t, ctx, "r1 dead and r2 parked behind it", func() bool {
		return tailCount(t, ctx, s, "k", true) == 1 && tailCount(t, ctx, s, "k", false) == 1
	})
	tailEnqueue(t, ctx, s, r3)
	tailEnqueue(t, ctx, s, other)
	tailUntil(t, ctx, "r3 parked and the other key published", func() bool {
		return tailCount(t, ctx, s, "k", false) == 2 && pub.Len() >= 1
	})
	for _, m := range pub.Messages() {
		if m.Key == "k" {
			t.Fatalf("%s of k was published while r1 is a dead letter", m.Payload)
		}
	}
	poison.Store(false)
	if n, err := s.ReplayDead(ctx, outbox.SelectDead{IDs: []string{r1.ID}}); err != nil || n != 1 {
		t.Fatalf("ReplayDead: %d, %v", n, err)
	}
	tailEnqueue(t, ctx, s, r4)
	if err := pub.WaitFor(ctx, 5); err != nil {
		t.Fatal(err)
	}
	var order []string
	seen := map[string]bool{}
	for _, m := range pub.Messages() {
		if m.Key == "k" && !seen[m.ID] {
			seen[m.ID] = true
			order = append(order, string(m.Payload))
		}
	}
	if !slices.Equal(order, []string{"r1", "r2", "r3", "r4"}) {
		t.Fatalf("k's first deliveries %v, want r1 r2 r3 r4", order)
	}
}

// TestAttackTailServerRestartMidStream probes at-least-once and per-key
// order across a crash of PostgreSQL itself: a writer commits messages of
// four keys while a relay streams them; the server is stopped at once
// (SIGQUIT, no checkpoint: the slot comes back at its last checkpointed
// position) and started again, and the writer goes on. Every committed
// message must arrive, first deliveries of a key in commit order;
// duplicates are allowed (the server crashed).
func TestAttackTailServerRestartMidStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, pool, s := ownTailServer(t, ctx, "restart")
	if srv == nil {
		return
	}
	pub := memory.NewPublisher(memory.PublisherConfig{})
	r, err := outbox.NewRelay(s, pub, outbox.RelayConfig{
		Owner: "a", PollInterval: 20 * time.Millisecond, MinPollInterval: time.Millisecond, Lease: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError + 1})),
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()

	led := ledger.New()
	var committed atomic.Int64
	wctx, stopWriting := context.WithCancel(ctx)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 0; wctx.Err() == nil; i++ {
			m := tailMsg(string(rune('a'+i%4)), "")
			tx, err := pool.Begin(wctx)
			if err == nil {
				if err = s.Enqueue(wctx, tx, m); err != nil {
					_ = tx.Rollback(context.Background())
					led.RolledBack(m)
				} else if err = tx.Commit(wctx); err != nil {
					led.Uncertain(m)
				} else {
					led.Committed(m)
					committed.Add(1)
				}
			}
			if err != nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	tailUntil(t, ctx, "50 messages published", func() bool { return pub.Len() >= 50 })
	srv.Stop(true)
	srv.Start()
	after := committed.Load() + 50
	tailUntil(t, ctx, "50 more messages committed after the restart", func() bool { return committed.Load() >= after })
	stopWriting()
	<-written
	tailUntil(t, ctx, "every committed message published", func() bool {
		seen := map[string]bool{}
		for _, m := range pub.Messages() {
			seen[m.ID] = true
		}
		return len(seen) >= int(committed.Load())
	})
	for _, m := range pub.Messages() {
		led.Receive(ledger.Received{ID: m.ID, Topic: m.Topic, Key: m.Key, Payload: m.Payload})
	}
	if rep := led.Report(); !rep.Clean() {
		t.Fatalf("after a crash of the server: %s", rep)
	} else {
		t.Logf("after a crash of the server: %s", rep)
	}
}

// TestAttackTailFrozenParkDoesNotStallTheLog probes the liveness of the
// Park fence: a relay that froze (SIGSTOP, a VM paused) in the middle of
// Park's transaction leaves its session idle in that transaction, holding
// the lock that ParkedKeys waits for, for as long as it stays frozen (its
// kernel still answers TCP keepalives). Every relay that takes the log
// then waits in ParkedKeys, gives up after ReadTimeout, and tries again:
// nobody streams. The frozen session must be ended by the server within
// about the lease, so that the next holder reads the parked keys.
//
// The test plays the frozen relay: a session that opened Park's
// transaction as Park does (parkBegin) and sends nothing more. Before the
// fix, ParkedKeys waited until its context ended.
func TestAttackTailFrozenParkDoesNotStallTheLog(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	la, err := s.TailLog(ctx, outbox.TailParams{Owner: "a", Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := la.(*stream)
	frozen, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Rollback(context.Background())
	if err := a.parkBegin(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	if err := la.Close(); err != nil {
		t.Fatal(err)
	}
	lb, err := s.TailLog(ctx, outbox.TailParams{Owner: "b", Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	// Thirty times the lease: the frozen session must be gone long before.
	kctx, kcancel := context.WithTimeout(ctx, 30*time.Second)
	defer kcancel()
	if _, err := lb.ParkedKeys(kctx, false); err != nil {
		t.Fatalf("ParkedKeys of the new holder, behind a relay frozen in Park: %v", err)
	}
}

// TestAttackTailSlotOfAnotherDatabase probes at-least-once across the
// databases of one cluster: replication slots are the cluster's, not a
// database's, and the slot's name comes from the schema and table only,
// so the outbox "s.outbox" of two databases (tenants, staging beside
// production) name the same slot. The second database's Migrate must not
// take the first's slot for its own, and its DropTail (leaving the
// tailing mode, cleaning up) must not drop it: the first database's
// messages in the slot would be lost.
func TestAttackTailSlotOfAnotherDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s1 := tailStore(t, Config{})
	m := tailMsg("k", "kept")
	tailEnqueue(t, ctx, s1, m)

	db := "txoutbox_other_" + strings.ReplaceAll(outbox.NewID()[24:], "-", "")
	if _, err := s1.pool.Exec(ctx, `CREATE DATABASE `+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = s1.pool.Exec(context.Background(), `DROP DATABASE IF EXISTS `+db+` WITH (FORCE)`)
	})
	cfg := s1.pool.Config().Copy()
	cfg.ConnConfig.Database = db
	pool2, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool2.Close()
	if _, err := pool2.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{s1.cfg.Schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	s2, err := New(pool2, Config{Schema: s1.cfg.Schema, Tail: true})
	if err != nil {
		t.Fatal(err)
	}
	migrateErr := s2.Migrate(ctx)
	dropErr := s2.DropTail(ctx)
	var n int
	if err := s1.pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, s1.Slot()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("the other database's Migrate (%v) and DropTail (%v) dropped this database's slot, and its messages", migrateErr, dropErr)
	}
	st, err := s1.TailLog(ctx, outbox.TailParams{Owner: "a", Lease: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := nextRecords(t, ctx, st, 1); got[0].ID != m.ID {
		t.Fatalf("read %s, want the message committed before", got[0].Payload)
	}
	t.Logf("the other database's Migrate: %v; DropTail: %v", migrateErr, dropErr)
}

// gatePublisher blocks the first call that has a message with payload
// "slow" until open is closed.
type gatePublisher struct {
	*memory.Publisher
	once    atomic.Bool
	blocked chan struct{}
	open    chan struct{}
}

func (p *gatePublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	for _, m := range msgs {
		if string(m.Payload) == "slow" && p.once.CompareAndSwap(false, true) {
			close(p.blocked)
			<-p.open
		}
	}
	return p.Publisher.Publish(ctx, msgs)
}

// TestAttackTailPublishLongerThanTheLease probes a relay whose Publish
// call outlasts its lease while a standby waits: the hold is renewed from
// a goroutine of its own, so the holder keeps the log (it is slow, not
// frozen), and no record is published twice or out of its key's order.
// Two relays run; the call that carries "slow" blocks for three leases;
// messages of the same key are committed behind it meanwhile.
func TestAttackTailPublishLongerThanTheLease(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tailStore(t, Config{})
	pub := &gatePublisher{Publisher: memory.NewPublisher(memory.PublisherConfig{}), blocked: make(chan struct{}), open: make(chan struct{})}
	lease := time.Second
	for _, owner := range []string{"a", "b"} {
		r, err := outbox.NewRelay(s, pub, outbox.RelayConfig{
			Owner: owner, PollInterval: 20 * time.Millisecond, MinPollInterval: time.Millisecond, Lease: lease,
			PublishTimeout: time.Minute,
			Logger:         slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError + 1})),
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		defer func() { stop(); <-done }()
	}
	led := ledger.New()
	slow := tailMsg("k", "slow")
	tailEnqueue(t, ctx, s, slow)
	led.Committed(slow)
	select {
	case <-pub.blocked:
	case <-ctx.Done():
		t.Fatal("the slow message was never published")
	}
	for i := range 20 {
		m := tailMsg("k", string(rune('a'+i)))
		tailEnqueue(t, ctx, s, m)
		led.Committed(m)
	}
	time.Sleep(3 * lease) // the call outlasts the lease; nothing is asserted about time
	close(pub.open)
	if err := pub.WaitFor(ctx, 21); err != nil {
		t.Fatal(err)
	}
	for _, m := range pub.Messages() {
		led.Receive(ledger.Received{ID: m.ID, Topic: m.Topic, Key: m.Key, Payload: m.Payload})
	}
	if rep := led.Report(); !rep.Clean() || rep.Duplicates != 0 {
		t.Fatalf("a publish longer than the lease: %s", rep)
	}
}
