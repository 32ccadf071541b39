package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// allLanes lists the lanes of s.
func allLanes(t testing.TB, ctx context.Context, s *Store) []int {
	t.Helper()
	n, err := s.laneTotal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lanes := make([]int, n)
	for i := range lanes {
		lanes[i] = i
	}
	return lanes
}

// readAll reads up to limit pending records of every lane.
func readAll(t testing.TB, ctx context.Context, s *Store, limit int) []outbox.Record {
	t.Helper()
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: allLanes(t, ctx, s), Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// epochs returns every lane at its current epoch, read from the table.
func epochs(t testing.TB, ctx context.Context, pool *pgxpool.Pool, s *Store) []outbox.Lane {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT lane, epoch FROM "+s.names.qualLanes+" ORDER BY lane")
	if err != nil {
		t.Fatal(err)
	}
	lanes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Lane, error) {
		var l outbox.Lane
		err := row.Scan(&l.ID, &l.Epoch)
		return l, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return lanes
}

// deliver settles the records as delivered at the lanes' current epochs.
func deliver(t testing.TB, ctx context.Context, s *Store, pool *pgxpool.Pool, ids ...string) {
	t.Helper()
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: epochs(t, ctx, pool, s), Delivered: ids, Retain: true}); err != nil {
		t.Fatal(err)
	}
}

// takeAll has owner take every free or expired lane, at the epochs a
// SyncLanes shows, and returns the lanes it took.
func takeAll(t testing.TB, ctx context.Context, s *Store, owner string, lease time.Duration, charge int) []outbox.Lane {
	t.Helper()
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]outbox.Lane, len(view.Lanes))
	for i, l := range view.Lanes {
		want[i] = l.Lane
	}
	taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: lease, Lanes: want, Charge: charge})
	if err != nil {
		t.Fatal(err)
	}
	return taken
}

// expire ends every lease, as if their owners had stopped renewing them.
func expire(t testing.TB, ctx context.Context, pool *pgxpool.Pool, s *Store) {
	t.Helper()
	if _, err := pool.Exec(ctx, "UPDATE "+s.names.qualLanes+" SET lease_until = now() - interval '1 second' WHERE owner <> ''"); err != nil {
		t.Fatal(err)
	}
}

// record reads one record's attempts, error and state back from the table.
func record(t testing.TB, ctx context.Context, pool *pgxpool.Pool, s *Store, id string) (attempts int, lastError string, delivered, dead, waiting bool) {
	t.Helper()
	err := pool.QueryRow(ctx, `SELECT attempts, last_error, delivered_at IS NOT NULL, dead_at IS NOT NULL, coalesce(not_before > now(), false)
FROM `+s.Table()+` WHERE id = $1`, id).Scan(&attempts, &lastError, &delivered, &dead, &waiting)
	if err != nil {
		t.Fatal(err)
	}
	return
}

// The first Migrate creates Config.Lanes lanes; a later Migrate with
// another count keeps them, and Enqueue, through any store, computes lanes
// with the count of the table.
func TestLaneCountIsFixedByFirstMigrate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 8})
	other, err := New(pool, Config{Schema: s.Config().Schema, Lanes: 16})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	view, err := other.SyncLanes(ctx, outbox.SyncParams{Owner: "r", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(view.Lanes) != 8 {
		t.Fatalf("%d lanes after a second Migrate asking for 16; want the 8 of the first", len(view.Lanes))
	}
	fresh, err := New(pool, Config{Schema: s.Config().Schema}) // default count, never migrated
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]outbox.Message, 20)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "t", Key: fmt.Sprintf("k%d", i%10)}
	}
	msgs = append(msgs, outbox.Message{Topic: "t"}) // no key: the lane of its ID
	for _, st := range []*Store{other, fresh} {
		if err := enqueueCommitted(ctx, pool, st, msgs...); err != nil {
			t.Fatal(err)
		}
		for i := range msgs {
			msgs[i].ID = ""
		}
	}
	recs := readAll(t, ctx, s, 100)
	if len(recs) != 2*len(msgs) {
		t.Fatalf("read %d records, want %d", len(recs), 2*len(msgs))
	}
	for _, r := range recs {
		if want := outbox.LaneOf(r.Key, r.ID, 8); r.Lane != want {
			t.Fatalf("record of key %q in lane %d; want %d, its lane among 8", r.Key, r.Lane, want)
		}
	}
	if st, err := fresh.Stats(ctx); err != nil || st.Lanes != 8 {
		t.Fatalf("Stats().Lanes = %d, %v; want 8", st.Lanes, err)
	}
}

// A store reads the lane count once: later Enqueues do not read it again
// (here, they work while the lanes table is renamed away).
func TestEnqueueReadsLaneCountOnce(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	migrated, pool := testStore(t, Config{Lanes: 4})
	s, err := New(pool, migrated.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := enqueueCommitted(ctx, pool, s, outbox.Message{Topic: "t", Key: "a"}); err != nil {
		t.Fatal(err)
	}
	lanes := s.names.qualLanes
	if _, err := pool.Exec(ctx, "ALTER TABLE "+lanes+" RENAME TO elsewhere"); err != nil {
		t.Fatal(err)
	}
	defer pool.Exec(ctx, "ALTER TABLE "+pgx.Identifier{s.names.schema, "elsewhere"}.Sanitize()+" RENAME TO "+pgx.Identifier{s.names.table + "_lanes"}.Sanitize())
	if err := enqueueCommitted(ctx, pool, s, outbox.Message{Topic: "t", Key: "a"}); err != nil {
		t.Fatalf("Enqueue read the lane count again: %v", err)
	}
	// A store that never read it says to migrate.
	third, _ := New(pool, migrated.Config())
	err = enqueueCommitted(ctx, pool, third, outbox.Message{Topic: "t", Key: "a"})
	if !errors.Is(err, outbox.ErrSchemaMissing) || !strings.Contains(err.Error(), "Migrate") {
		t.Fatalf("Enqueue without the lanes table = %v; want ErrSchemaMissing saying to run Migrate", err)
	}
}

// A relay that lost its lanes (its leases ran out and another relay took
// them over) settles nothing: its deliveries, retries and dead letters are
// ignored; the new holder's count.
func TestLateSettleAfterTakeoverChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 4})
	msgs := []outbox.Message{{Topic: "t", Key: "a"}, {Topic: "t", Key: "b"}, {Topic: "t", Key: "c"}}
	if err := enqueueCommitted(ctx, pool, s, msgs...); err != nil {
		t.Fatal(err)
	}
	old := takeAll(t, ctx, s, "old", time.Minute, 0)
	if len(old) != 4 {
		t.Fatalf("old took %d lanes, want 4", len(old))
	}
	expire(t, ctx, pool, s)
	taken := takeAll(t, ctx, s, "new", time.Minute, 0)
	if len(taken) != 4 {
		t.Fatalf("new took %d lanes, want the 4 expired ones", len(taken))
	}
	for i, l := range taken {
		if l.Epoch != old[i].Epoch+1 {
			t.Fatalf("lane %d taken at epoch %d; want %d", l.ID, l.Epoch, old[i].Epoch+1)
		}
	}
	late := outbox.SettleParams{
		Lanes:     old,
		Delivered: []string{msgs[0].ID},
		Retain:    true,
		Retries:   []outbox.Retry{{ID: msgs[1].ID, Error: "late", Delay: time.Hour}},
		Dead:      []outbox.Failure{{ID: msgs[2].ID, Error: "late"}},
	}
	if err := s.Settle(ctx, late); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: old, Delivered: []string{msgs[1].ID}, Retain: true}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if attempts, lastErr, delivered, dead, waiting := record(t, ctx, pool, s, m.ID); attempts != 0 || lastErr != "" || delivered || dead || waiting {
			t.Fatalf("record %s after late settles: attempts %d, error %q, delivered %v, dead %v, waiting %v; want untouched",
				m.Key, attempts, lastErr, delivered, dead, waiting)
		}
	}
	// The same outcomes at the new epochs apply.
	late.Lanes = taken
	if err := s.Settle(ctx, late); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		attempts                 int
		lastErr                  string
		delivered, dead, waiting bool
	}{{0, "", true, false, false}, {1, "late", false, false, true}, {1, "late", false, true, false}}
	for i, m := range msgs {
		attempts, lastErr, delivered, dead, waiting := record(t, ctx, pool, s, m.ID)
		if w := want[i]; attempts != w.attempts || lastErr != w.lastErr || delivered != w.delivered || dead != w.dead || waiting != w.waiting {
			t.Fatalf("record %s: attempts %d, error %q, delivered %v, dead %v, waiting %v; want %+v", m.Key, attempts, lastErr, delivered, dead, waiting, w)
		}
	}
}

// Taking over lanes whose owner let its lease expire charges an attempt to
// their first pending records that are due, in Seq order across them (a
// record waiting out a retry delay was not in flight: it is neither charged
// nor counted); taking lanes that were released charges nothing.
func TestTakeoverCharges(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 4})
	var msgs []outbox.Message
	for i := range 12 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: fmt.Sprintf("k%d", i%6)})
	}
	if err := enqueueCommitted(ctx, pool, s, msgs...); err != nil {
		t.Fatal(err)
	}
	deliver(t, ctx, s, pool, msgs[0].ID) // delivered records are never charged
	a := takeAll(t, ctx, s, "a", time.Minute, 5)
	if err := s.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "a", Lanes: a, Leave: true}); err != nil {
		t.Fatal(err)
	}
	b := takeAll(t, ctx, s, "b", time.Minute, 5)
	if len(b) != 4 {
		t.Fatalf("b took %d released lanes, want 4", len(b))
	}
	for _, m := range msgs {
		if attempts, _, _, _, _ := record(t, ctx, pool, s, m.ID); attempts != 0 {
			t.Fatalf("taking released lanes charged record %s", m.ID)
		}
	}
	// Record 2 waits out a retry delay: it was not in flight, so the
	// takeover neither charges nor counts it. Record 3's delay has passed:
	// it is due, and charged.
	for id, delay := range map[string]string{msgs[2].ID: "1 hour", msgs[3].ID: "-1 second"} {
		if _, err := pool.Exec(ctx, "UPDATE "+s.Table()+" SET not_before = now() + $2::interval WHERE id = $1::uuid", id, delay); err != nil {
			t.Fatal(err)
		}
	}
	expire(t, ctx, pool, s)
	if c := takeAll(t, ctx, s, "c", time.Minute, 5); len(c) != 4 {
		t.Fatalf("c took %d expired lanes, want 4", len(c))
	}
	for i, m := range msgs {
		want := 0
		if i >= 1 && i <= 6 && i != 2 {
			want = 1 // the first five pending records that are due
		}
		if attempts, _, _, _, _ := record(t, ctx, pool, s, m.ID); attempts != want {
			t.Fatalf("record %d has %d attempts after the takeover; want %d", i, attempts, want)
		}
	}
}

// Relays racing for the same lanes each get a share, and every lane goes
// to exactly one of them: no error, no deadlock.
func TestConcurrentTakesAreExclusive(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, _ := testStore(t, Config{Lanes: 64})
	for round := range 3 {
		var mu sync.Mutex
		owners := make(map[int]string)
		var wg sync.WaitGroup
		for r := range 4 {
			owner := fmt.Sprintf("r%d-%d", round, r)
			wg.Go(func() {
				view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: time.Minute})
				if err != nil {
					t.Error(err)
					return
				}
				var want []outbox.Lane
				for _, l := range view.Lanes {
					want = append(want, l.Lane)
				}
				taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: time.Minute, Lanes: want, Charge: 10})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, l := range taken {
					if o, dup := owners[l.ID]; dup {
						t.Errorf("lane %d taken by %s and %s", l.ID, o, owner)
					}
					owners[l.ID] = owner
				}
			})
		}
		wg.Wait()
		if len(owners) != 64 {
			t.Fatalf("round %d: %d lanes taken, want 64", round, len(owners))
		}
		// The next round takes the lanes over from expired owners.
		if _, err := s.pool.Exec(ctx, "UPDATE "+s.names.qualLanes+" SET lease_until = now() - interval '1 second'"); err != nil {
			t.Fatal(err)
		}
	}
}

// Leases are measured on the database clock: a lane's lease and a relay's
// membership end Lease after the server's now().
func TestLeasesUseDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 2})
	taken := takeAll(t, ctx, s, "r", time.Hour, 0)
	if len(taken) != 2 {
		t.Fatalf("took %d lanes, want 2", len(taken))
	}
	var lane, relay time.Duration
	err := pool.QueryRow(ctx, "SELECT (SELECT min(lease_until) FROM "+s.names.qualLanes+") - now(), (SELECT lease_until FROM "+
		s.names.qualRelays+" WHERE owner = 'r') - now()").Scan(&lane, &relay)
	if err != nil {
		t.Fatal(err)
	}
	for name, left := range map[string]time.Duration{"lane": lane, "relay": relay} {
		if left <= 59*time.Minute || left > time.Hour {
			t.Fatalf("the %s lease ends %v after the database's now(); want an hour", name, left)
		}
	}
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "r", Lease: time.Minute, Held: taken})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range view.Lanes {
		if left := l.Until.Sub(view.Now); l.Owner != "r" || left != time.Minute {
			t.Fatalf("lane %+v after a renewal at %v; want held by r until a minute after", l, view.Now)
		}
	}
	if !slices.Equal(view.Relays, []string{"r"}) {
		t.Fatalf("relays %v; want [r]", view.Relays)
	}
}

// No statement of the relay's side makes the server send a notice (the
// claim it replaced logged a SET TRANSACTION warning each time).
func TestNoNotices(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 4})
	var mu sync.Mutex
	var notices []string
	quiet := namedPool(t, "pgstore-notices", func(cfg *pgxpool.Config) {
		cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			defer mu.Unlock()
			notices = append(notices, n.Severity+": "+n.Message)
		}
	})
	qs, err := New(quiet, s.Config())
	if err != nil {
		t.Fatal(err)
	}
	msgs := []outbox.Message{{Topic: "t", Key: "a"}, {Topic: "t", Key: "b"}, {Topic: "t"}}
	if err := enqueueCommitted(ctx, quiet, qs, msgs...); err != nil {
		t.Fatal(err)
	}
	takeAll(t, ctx, qs, "r", time.Minute, 2)
	expire(t, ctx, pool, s)
	taken := takeAll(t, ctx, qs, "r2", time.Minute, 2)
	if _, err := qs.SyncLanes(ctx, outbox.SyncParams{Owner: "r2", Lease: time.Minute, Held: taken}); err != nil {
		t.Fatal(err)
	}
	for _, strict := range []bool{false, true} {
		if _, err := qs.Read(ctx, outbox.ReadParams{Lanes: allLanes(t, ctx, qs), Limit: 10, SkipKeys: []string{"x"}, StrictOrder: strict}); err != nil {
			t.Fatal(err)
		}
	}
	if err := qs.Settle(ctx, outbox.SettleParams{Lanes: taken, Delivered: []string{msgs[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if err := qs.Settle(ctx, outbox.SettleParams{Lanes: taken, Delivered: []string{msgs[1].ID},
		Retries: []outbox.Retry{{ID: msgs[2].ID, Error: "x", Delay: time.Second}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := qs.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if err := qs.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "r2", Lanes: taken, Leave: true}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notices) > 0 {
		t.Fatalf("the server sent notices: %q", notices)
	}
}
