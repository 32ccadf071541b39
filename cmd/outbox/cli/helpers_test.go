package cli_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/lanetest"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

func storePool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func openStore(t *testing.T, url, schema string) *pgstore.Store {
	t.Helper()
	st, err := pgstore.New(storePool(t, url), pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// deadLetterAll reads the n pending records, holding every lane for the
// time of it, and dead-letters them.
func deadLetterAll(t *testing.T, st *pgstore.Store, n int) {
	t.Helper()
	r := lanetest.Hold(t, st, "test", nil)
	defer r.Leave()
	recs := r.Read(n + 1)
	if len(recs) != n {
		t.Fatalf("read %d records, want %d", len(recs), n)
	}
	r.Dead("gave up: broker refused it", recs...)
}

func stats(t *testing.T, st *pgstore.Store) outbox.Stats {
	t.Helper()
	s, err := st.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
