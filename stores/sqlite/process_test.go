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

// Claimers in separate processes share nothing but the database file: no
// in-process lock queue, no hub. SQLite's file locks alone must keep their
// claims disjoint and in per-key order. Each claimer logs what it delivers
// in a table of the same file before it marks it delivered; the successor
// of a record can be claimed only after that, so the log lists every key's
// records in write order, each once, if the store is right.

const claimerEnv = "SQLITESTORE_TEST_CLAIMER" // database path, in the child

// runClaimerProcess is the child: it claims, logs and delivers (or
// releases) until nothing is pending.
func runClaimerProcess(path string) int {
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "claimer:", err)
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
	for {
		recs, err := store.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: 1 + rng.IntN(8), Lease: time.Hour})
		if err != nil {
			return fail(err)
		}
		if len(recs) == 0 {
			st, err := store.Stats(ctx)
			if err != nil {
				return fail(err)
			}
			if st.Pending == 0 {
				return 0
			}
			time.Sleep(time.Millisecond) // the rest is leased to other processes; do not spin
			continue
		}
		var deliver, giveBack []string
		held := make(map[string]bool)
		for _, r := range recs {
			if held[r.Key] || rng.IntN(5) == 0 {
				held[r.Key] = true
				giveBack = append(giveBack, r.ID)
				continue
			}
			deliver = append(deliver, r.ID)
			if _, err := db.ExecContext(ctx, `INSERT INTO claim_log (id, owner) VALUES (?, ?)`, r.ID, owner); err != nil {
				return fail(err)
			}
		}
		if err := store.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: owner, IDs: deliver}); err != nil {
			return fail(err)
		}
		if err := store.Release(ctx, outbox.ReleaseParams{Owner: owner, IDs: giveBack}); err != nil {
			return fail(err)
		}
	}
}

func TestClaimersInSeparateProcessesKeepKeyOrder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	db := openDB(t, path)
	store := newStore(t, db, sqlitestore.Config{})
	if _, err := db.ExecContext(ctx, `CREATE TABLE claim_log (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, owner TEXT NOT NULL)`); err != nil {
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
		cmd.Env = append(os.Environ(), claimerEnv+"="+path)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
	}
	for range processes {
		if err := <-done; err != nil {
			t.Fatalf("claimer process: %v", err)
		}
	}

	rows, err := db.QueryContext(ctx, `SELECT id, owner FROM claim_log ORDER BY n`)
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
			t.Fatalf("record %s was delivered twice: two processes held it at once", id)
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
