package sqlitestore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// Relays in separate processes share nothing but the database file: no
// in-process lock queue, no hub. SQLite's file locks alone must keep their
// lanes disjoint, and per-key order must hold while lanes change hands.
// Each process takes its fair share of the lanes, gives lanes back at
// random, and logs what it delivers in a table of the same file before it
// settles it; so the log lists every key's records in write order, each
// once, if the store is right.

const laneRelayEnv = "SQLITESTORE_TEST_LANE_RELAY" // database path, in the child

// runLaneRelayProcess is the child: it takes lanes, reads, logs, delivers
// and releases lanes until nothing is pending.
func runLaneRelayProcess(path string) int {
	ctx := context.Background()
	fail := func(err error) int {
		if err == nil {
			return 0
		}
		fmt.Fprintln(os.Stderr, "lane relay:", err)
		return 1
	}
	db, err := sqlitestore.Open(path)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	store, err := sqlitestore.New(db, sqlitestore.Config{})
	if err != nil {
		return fail(err)
	}
	owner := "pid-" + strconv.Itoa(os.Getpid())
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 3))
	var held []outbox.Lane
	for {
		view, err := store.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: time.Hour, Held: held})
		if err != nil {
			return fail(err)
		}
		held = held[:0]
		var free []outbox.Lane
		for _, l := range view.Lanes {
			switch l.Owner {
			case owner:
				held = append(held, l.Lane)
			case "":
				free = append(free, l.Lane)
			}
		}
		share := (len(view.Lanes) + len(view.Relays) - 1) / len(view.Relays)
		if len(held) > share {
			if err := store.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: owner, Lanes: held[share:]}); err != nil {
				return fail(err)
			}
			held = held[:share]
		} else if want := share - len(held); want > 0 && len(free) > 0 {
			rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
			taken, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: time.Hour, Lanes: free[:min(want, len(free))]})
			if err != nil {
				return fail(err)
			}
			held = append(held, taken...)
		}
		var recs []outbox.Record
		if len(held) > 0 {
			lanes := make([]int, len(held))
			for i, l := range held {
				lanes[i] = l.ID
			}
			if recs, err = store.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: 1 + rng.IntN(8)}); err != nil {
				return fail(err)
			}
		}
		if len(recs) == 0 {
			st, err := store.Stats(ctx)
			if err != nil {
				return fail(err)
			}
			if st.Pending == 0 {
				return fail(store.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: owner, Lanes: held, Leave: true}))
			}
			time.Sleep(time.Millisecond) // the rest is in other processes' lanes; do not spin
			continue
		}
		delivered := make([]string, len(recs))
		for i, r := range recs {
			if _, err := db.ExecContext(ctx, `INSERT INTO delivery_log (id, owner) VALUES (?, ?)`, r.ID, owner); err != nil {
				return fail(err)
			}
			delivered[i] = r.ID
		}
		if err := store.Settle(ctx, outbox.SettleParams{Lanes: held, Delivered: delivered}); err != nil {
			return fail(err)
		}
		if rng.IntN(4) == 0 { // hand a lane over
			i := rng.IntN(len(held))
			if err := store.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: owner, Lanes: held[i : i+1]}); err != nil {
				return fail(err)
			}
			held = append(held[:i], held[i+1:]...)
		}
	}
}

func TestLaneRelaysInSeparateProcessesKeepKeyOrder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	db := openDB(t, path)
	store := newStore(t, db, sqlitestore.Config{Lanes: 8})
	if _, err := db.ExecContext(ctx, `CREATE TABLE delivery_log (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, owner TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const keys, perKey = 8, 40
	position := make(map[string]int)
	keyOf := make(map[string]string)
	for i := range perKey {
		var batch []outbox.Message
		for k := range keys {
			batch = append(batch, outbox.Message{Topic: "t", Key: fmt.Sprint("key-", k)})
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Enqueue(ctx, tx, batch...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			position[m.ID] = i
			keyOf[m.ID] = m.Key
		}
	}

	const processes = 3
	done := make(chan error, processes)
	for range processes {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), laneRelayEnv+"="+path)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
	}
	for range processes {
		if err := <-done; err != nil {
			t.Fatalf("lane relay process: %v", err)
		}
	}

	rows, err := db.QueryContext(ctx, `SELECT id, owner FROM delivery_log ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	next := make(map[string]int)
	owners := make(map[string]int)
	seen := make(map[string]bool)
	for rows.Next() {
		var id, owner string
		if err := rows.Scan(&id, &owner); err != nil {
			t.Fatal(err)
		}
		if seen[id] {
			t.Fatalf("record %s was delivered twice: two processes held its lane at once", id)
		}
		seen[id] = true
		owners[owner]++
		key := keyOf[id]
		if position[id] != next[key] {
			t.Fatalf("record %d of %s was delivered when record %d was its oldest undelivered one", position[id], key, next[key])
		}
		next[key]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != keys*perKey {
		t.Fatalf("%d of %d records were delivered", len(seen), keys*perKey)
	}
	t.Logf("deliveries by process: %v", owners)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
