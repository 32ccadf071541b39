package pgstore

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// Before PostgreSQL 17 a restart, even a fast one, takes a logical slot
// back to the position last written at a checkpoint where it had changed
// otherwise: everything relays confirmed since would be published again
// (thousands of duplicates in the chaos runs). The holder saves its
// position in the table <table>_tail and a new holder starts from it: after
// a relay delivered everything and stopped, a fast restart of the server
// and a new relay publish none of it again.
func TestTailRestartResendsNothingDelivered(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, pool, s := ownTailServer(t, ctx, "public")
	if srv == nil {
		return
	}
	pub := memory.NewPublisher(memory.PublisherConfig{})
	run := func() (stop func()) {
		r, err := outbox.NewRelay(s, pub, outbox.RelayConfig{
			Owner: "r", PollInterval: 20 * time.Millisecond, MinPollInterval: time.Millisecond, Lease: 2 * time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		return func() { cancel(); <-done }
	}

	stop := run()
	const n = 200
	for i := range n / 10 {
		var msgs []outbox.Message
		for j := range 10 {
			msgs = append(msgs, tailMsg(string(rune('a'+j%4)), string(rune('0'+i%10))))
		}
		tailEnqueue(t, ctx, s, msgs...)
	}
	tailUntil(t, ctx, "every message published", func() bool { return pub.Len() >= n })
	stop() // graceful: the relay reports and saves its position
	if pub.Len() != n {
		t.Fatalf("%d publications of %d messages before the restart", pub.Len(), n)
	}

	srv.Stop(false) // fast shutdown
	srv.Start()
	pool.Reset() // its connections died with the server
	stop = run()
	defer stop()
	last := tailMsg("z", "after the restart")
	tailEnqueue(t, ctx, s, last)
	tailUntil(t, ctx, "the message written after the restart", func() bool {
		for _, m := range pub.Messages() {
			if m.ID == last.ID {
				return true
			}
		}
		return false
	})
	if again := pub.Len() - n - 1; again != 0 {
		t.Fatalf("after a fast restart, %d of the %d messages delivered before it were published again", again, n)
	}
}

// ownTailServer starts a PostgreSQL server of t's own (one it may restart)
// and returns it with a pool on it and a migrated tailing store in schema;
// a nil server means there is none to start (t was skipped).
func ownTailServer(t *testing.T, ctx context.Context, schema string) (*pgserver.Process, *pgxpool.Pool, *Store) {
	t.Helper()
	srv := pgserver.Start(t)
	if srv == nil {
		return nil, nil, nil
	}
	pool, err := pgxpool.New(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema); err != nil {
		t.Fatal(err)
	}
	s, err := New(pool, Config{Schema: schema, Tail: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, pool, s
}
