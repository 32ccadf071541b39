package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance/servers"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/examples/internal/testenv"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

// The program runs end to end against real servers, through pgx's stdlib
// driver and through lib/pq: the order and its event commit together, and
// the event arrives on the topic.
func TestRun(t *testing.T) {
	for _, driver := range []string{"pgx", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			databaseURL := testenv.PostgresURL(t)
			brokers, topic := testenv.Kafka(t)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var out strings.Builder
			cfg := config{DatabaseURL: databaseURL, DatabaseDriver: driver, KafkaBrokers: brokers, Topic: topic}
			if err := run(ctx, cfg, &out); err != nil {
				t.Fatalf("run: %v\noutput:\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "received from Kafka topic "+topic) || !strings.Contains(out.String(), `"customer":"ada"`) {
				t.Fatalf("output does not show the event received:\n%s", out.String())
			}
		})
	}
}

// EnqueueSQL sends only arguments every driver accepts. Through lib/pq
// (which takes no Go slices), several messages at once, with content that
// array literals must escape, read back as sent, in order; errors keep their
// sentinels.
func TestEnqueueSQLThroughLibPQ(t *testing.T) {
	databaseURL := testenv.PostgresURL(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db, err := sql.Open("postgres", databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := pgstore.New(pool, pgstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	enqueue := func(msgs ...outbox.Message) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := store.EnqueueSQL(ctx, tx, msgs...); err != nil {
			return err
		}
		return tx.Commit()
	}
	if err := enqueue(outbox.Message{Topic: "t"}); !errors.Is(err, outbox.ErrSchemaMissing) {
		t.Fatalf("EnqueueSQL before Migrate = %v; want ErrSchemaMissing", err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sent := []outbox.Message{
		{Topic: "t", Key: `k "1", {a,b} \ NULL`, Payload: []byte{0, '\\', '"', 0xff}, Headers: map[string]string{"h": `"{\}"`}},
		{Topic: "t", Key: `k "1", {a,b} \ NULL`, Payload: nil},
		{Topic: "t", Key: "", Payload: []byte("third")},
	}
	if err := enqueue(sent...); err != nil {
		t.Fatal(err)
	}
	lanes := make([]int, outbox.DefaultLanes) // a relay reads the lanes it holds; this test reads them all
	for i := range lanes {
		lanes[i] = i
	}
	recs, err := store.Read(ctx, outbox.ReadParams{Lanes: lanes, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(sent) {
		t.Fatalf("read %d records, want %d", len(recs), len(sent))
	}
	for i, r := range recs {
		want := sent[i]
		if r.Lane != outbox.LaneOf(want.Key, want.ID, outbox.DefaultLanes) {
			t.Errorf("record %d is in lane %d, want the lane of its key", i, r.Lane)
		}
		if r.ID != want.ID || r.Key != want.Key || !bytes.Equal(r.Payload, want.Payload) || !maps.Equal(r.Headers, want.Headers) {
			t.Errorf("record %d reads back as %+v, want %+v", i, r.Message, want)
		}
	}
	if err := enqueue(outbox.Message{ID: sent[0].ID, Topic: "t"}, outbox.Message{Topic: "t"}); err == nil || !strings.Contains(err.Error(), "already in the outbox") {
		t.Fatalf("EnqueueSQL of an ID already in the outbox = %v; want the duplicate named", err)
	}
}
