package pgstore

// Adversarial interleavings against the lane-based store on the real
// server (PostgreSQL 15). Each test says which promise it probes and how
// it orders the sessions.

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// twoLaneRecords returns a record of lane 1 and one of lane 0 (of 2), the
// first with the smaller ID, so that a statement that finds them by ID
// reaches r0 first.
func twoLaneRecords() (r0, r1 outbox.Message) {
	for {
		r0 = outbox.Message{ID: outbox.NewID(), Topic: "t"}
		r1 = outbox.Message{ID: outbox.NewID(), Topic: "t"}
		if outbox.LaneOf("", r0.ID, 2) == 1 && outbox.LaneOf("", r1.ID, 2) == 0 && r0.ID < r1.ID {
			return r0, r1
		}
	}
}

// waitForLockWait waits until a session runs a statement containing text
// and waits for a lock, failing t when done delivers first.
func waitForLockWait(t *testing.T, ctx context.Context, pool *pgxpool.Pool, text string, done <-chan error) {
	t.Helper()
	for {
		select {
		case err := <-done:
			t.Fatalf("the statement finished without waiting for the lock: %v", err)
		case <-ctx.Done():
			t.Fatalf("gave up waiting for the lock wait: %v", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0`, text).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
}

// TestAttackSettleRacesTakeover probes promise 4: a relay that lost a lane
// can at most publish duplicates; its late Settle changes nothing.
//
// Settle checks the epochs in an InitPlan (SELECT l.lane FROM unnest(...)
// JOIN lanes l ...) that reads the lanes table from the statement's
// snapshot, without locking the lane rows, and only then writes the
// records. A takeover that commits after the statement began but before it
// writes a record is invisible to the check, and in READ COMMITTED the
// UPDATE re-checks the record's own row (EvalPlanQual) but never the
// InitPlan. The window is as long as the statement waits on any row lock,
// and the takeover's own charge (TakeLanes updates the first pending
// records of the lane) is such a lock whenever the two overlap.
//
// The test makes the window deterministic:
//
//   - relay A holds lane 1 (record r0, the smaller ID) and lane 0 (r1);
//   - a third session locks r0 (SELECT ... FOR UPDATE), standing in for
//     any row lock or stall;
//   - A settles r0 and r1: its UPDATE takes its snapshot, evaluates the
//     InitPlan (both lanes at A's epochs) and waits on r0;
//   - A's lease of lane 0 runs out; B takes lane 0 (before the fix,
//     TakeLanes committed, bumping the epoch and charging r1; now it waits
//     for A's settle);
//   - the third session rolls back; A's UPDATE writes r0, then r1.
//
// Before the fix, on PostgreSQL 15, r1 was written by A after B took its
// lane: with a dead letter, the record B was publishing was dead-lettered
// behind its back, and B's delivered settle then ignored it.
//
// The fix: Settle's statements lock the lane rows they depend on before
// writing, in the same statement and in lane order (a MATERIALIZED CTE,
// FOR KEY SHARE, feeding the lane = ANY(ARRAY(...)) test). In READ
// COMMITTED the locking read waits for a takeover in progress, and for a
// row changed by a takeover committed after the snapshot it follows the
// update and re-checks the epoch, so the row drops out; TakeLanes' FOR
// UPDATE cannot pass the lock until the settle commits. The test now
// checks that the takeover waits for the settle, that the two results are
// those of the serial order (settle, then take), and that a settle after
// the takeover changes nothing.
func TestAttackSettleRacesTakeover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		settle func(lanes []outbox.Lane, r0, r1 string) outbox.SettleParams
		text   string // in the statement that waits
	}{
		{"Delivered", func(lanes []outbox.Lane, r0, r1 string) outbox.SettleParams {
			return outbox.SettleParams{Lanes: lanes, Delivered: []string{r0, r1}, Retain: true}
		}, "SET delivered_at = now()"},
		{"Dead", func(lanes []outbox.Lane, r0, r1 string) outbox.SettleParams {
			return outbox.SettleParams{Lanes: lanes, Dead: []outbox.Failure{{ID: r0, Error: "gave up"}, {ID: r1, Error: "gave up"}}}
		}, "SET attempts = o.attempts + 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			s, pool := testStore(t, Config{Lanes: 2})
			m0, m1 := twoLaneRecords()
			if err := enqueueCommitted(ctx, pool, s, m0); err != nil {
				t.Fatal(err)
			}
			if err := enqueueCommitted(ctx, pool, s, m1); err != nil {
				t.Fatal(err)
			}
			lanes := takeAll(t, ctx, s, "a", time.Hour, 0)
			if len(lanes) != 2 {
				t.Fatalf("A took %v, want both lanes", lanes)
			}

			hold, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = hold.Rollback(context.WithoutCancel(ctx)) }()
			if _, err := hold.Exec(ctx, "SELECT id FROM "+s.Table()+" WHERE id = $1 FOR UPDATE", m0.ID); err != nil {
				t.Fatal(err)
			}
			settled := make(chan error, 1)
			go func() { settled <- s.Settle(ctx, tc.settle(lanes, m0.ID, m1.ID)) }()
			waitForLockWait(t, ctx, pool, tc.text, settled)

			// A's lease of lane 0 runs out; B tries to take it over. A's
			// settle holds its lane rows (FOR KEY SHARE, taken before it
			// waits on r0), so the takeover waits for the settle: the two
			// are serialized, settle first.
			if _, err := pool.Exec(ctx, "UPDATE "+s.names.qualLanes+" SET lease_until = now() - interval '1 second' WHERE lane = 0"); err != nil {
				t.Fatal(err)
			}
			type takeResult struct {
				taken []outbox.Lane
				err   error
			}
			took := make(chan takeResult, 1)
			go func() {
				taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "b", Lease: time.Hour, Lanes: []outbox.Lane{lanes[0]}, Charge: 10})
				took <- takeResult{taken, err}
			}()
			takeDone := make(chan error, 1)
			go func() {
				// waitForLockWait wants an error channel; the take's
				// result is forwarded when it comes early.
				r := <-took
				took <- r
				takeDone <- r.err
			}()
			waitForLockWait(t, ctx, pool, "SET owner = $1::text, epoch = l.epoch + 1", takeDone)
			if err := hold.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-settled; err != nil {
				t.Fatal(err)
			}
			r := <-took
			if r.err != nil || len(r.taken) != 1 || r.taken[0].ID != 0 || r.taken[0].Epoch != lanes[0].Epoch+1 {
				t.Fatalf("B takes lane 0 after A's settle: %v, %v", r.taken, r.err)
			}

			// Serial order: A settled r0 and r1 while it held both lanes;
			// B's takeover came after, and its charge skips r1, settled.
			for _, id := range []string{m0.ID, m1.ID} {
				attempts, _, delivered, dead, _ := record(t, ctx, pool, s, id)
				want := 0
				if dead {
					want = 1 // A's failed attempt, not B's charge
				}
				if (!delivered && !dead) || attempts != want {
					t.Errorf("record %s: delivered %v, dead %v, attempts %d; want settled by A with %d attempts (B's charge after the settle skips it)",
						id, delivered, dead, attempts, want)
				}
			}
			// Once B holds lane 0, A's settles at its old epoch change
			// nothing.
			m2 := outbox.Message{Topic: "t"}
			for outbox.LaneOf("", m2.ID, 2) != 0 {
				m2.ID = outbox.NewID()
			}
			if err := enqueueCommitted(ctx, pool, s, m2); err != nil {
				t.Fatal(err)
			}
			if err := s.Settle(ctx, tc.settle(lanes, m2.ID, m2.ID)); err != nil {
				t.Fatal(err)
			}
			if attempts, _, delivered, dead, _ := record(t, ctx, pool, s, m2.ID); delivered || dead || attempts != 0 {
				t.Errorf("A's settle after B's takeover wrote r2 of lane 0: delivered %v, dead %v, attempts %d", delivered, dead, attempts)
			}
		})
	}
}

// TestAttackSyncLanesDoesNotWaitForTakeOfOtherLanes probes promise 7 on
// PostgreSQL: TakeLanes locks only the lanes it can take (its locking read
// filters on epoch and expiry, and READ COMMITTED re-checks a row it waited
// for), so a relay's heartbeat never waits on a taker of other lanes. A
// session holding the row of a free lane locked (as a TakeLanes in flight
// does) must not delay the renewal of a held lane.
func TestAttackSyncLanesDoesNotWaitForTakeOfOtherLanes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Lanes: 2})
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	held, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Minute, Lanes: []outbox.Lane{view.Lanes[0].Lane}})
	if err != nil || len(held) != 1 {
		t.Fatalf("A takes lane 0: %v, %v", held, err)
	}
	// B, with a stale view (lane 0 expired at A's epoch) and lane 1 free,
	// runs TakeLanes' statement in a transaction it keeps open, as a relay
	// frozen before its COMMIT arrives would.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, s.sql.takeLanes, "b", []int32{0, 1}, []int64{held[0].Epoch, view.Lanes[1].Epoch}, int64(time.Minute/time.Microsecond), 0)
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := s.SyncLanes(sctx, outbox.SyncParams{Owner: "a", Lease: time.Minute, Held: held})
	if err != nil {
		t.Fatalf("promise 7: A's heartbeat waits on B's open TakeLanes of other lanes: %v", err)
	}
	if v.Lanes[0].Owner != "a" || v.Lanes[0].Epoch != held[0].Epoch {
		t.Fatalf("lane 0 is %+v after A's renewal; want A's at epoch %d", v.Lanes[0], held[0].Epoch)
	}
}
