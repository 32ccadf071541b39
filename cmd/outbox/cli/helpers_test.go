package cli_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

// deadLetterAll claims the n pending records and dead-letters them.
func deadLetterAll(t *testing.T, st *pgstore.Store, n int) {
	t.Helper()
	ctx := t.Context()
	recs, err := st.Claim(ctx, outbox.ClaimParams{Owner: "test", Limit: n, Lease: time.Minute})
	if err != nil || len(recs) != n {
		t.Fatalf("claim: %d records, %v", len(recs), err)
	}
	var letters []outbox.Failure
	for _, r := range recs {
		letters = append(letters, outbox.Failure{ID: r.ID, Error: "gave up: broker refused it"})
	}
	if err := st.DeadLetter(ctx, outbox.DeadLetterParams{Owner: "test", Letters: letters}); err != nil {
		t.Fatal(err)
	}
}

func stats(t *testing.T, st *pgstore.Store) outbox.Stats {
	t.Helper()
	s, err := st.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
