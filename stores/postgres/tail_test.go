package pgstore

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"

	"github.com/txoutbox/txoutbox/conformance"
)

// tailStore returns a migrated store in the tailing mode, in a schema of
// t's own; its slot and publication are dropped when t ends (after the
// relays it started stopped, since cleanups run last-in first-out).
func tailStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	cfg.Tail = true
	s, pool := testStore(t, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropTail(ctx); err != nil {
			t.Errorf("DropTail: %v", err)
		}
	})
	_ = pool
	return s
}

// tailHarness builds outboxes in the tailing mode for the relay suite.
func tailHarness() conformance.StoreHarness {
	return conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
		s := tailStore(t, Config{Limits: opts.Limits, Lanes: opts.Lanes})
		return outboxOf(s, s.pool)
	}}
}

// The relay suite with the outbox as a log: writers and relays lose
// nothing and keep per-key order, a poison message is parked and
// dead-lettered while the stream goes on, and the slot changes hands as
// relays join, leave, crash and wake up from a pause.
func TestTailRelaySuite(t *testing.T) {
	t.Parallel()
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:    tailHarness(),
		Broker:   conformance.MemoryBroker(),
		HoldOpen: 6 * time.Second,
	})
}

// A message's content survives the WAL: every field, headers, an empty
// payload and a key with multibyte characters, and a truncated content is
// an error, not a message.
func TestTailEncodingRoundTrips(t *testing.T) {
	msgs := []outbox.Message{
		{Topic: "orders", Key: "clé-ü", Payload: []byte(`{"id":1}`), Headers: map[string]string{"a": "1", "trace": "x y"}},
		{Topic: "t", Payload: nil},
	}
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		b, err := encodeTail(&m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeTail(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != m.ID || got.Topic != m.Topic || got.Key != m.Key || string(got.Payload) != string(m.Payload) ||
			!got.CreatedAt.Equal(m.CreatedAt) || !maps.Equal(got.Headers, m.Headers) {
			t.Errorf("decoded %+v, want %+v", got, m)
		}
		for n := range len(b) - len(m.Payload) {
			if _, err := decodeTail(b[:n]); err == nil {
				t.Errorf("content cut to %d of %d bytes decoded without error", n, len(b))
			}
		}
	}
}

// Several messages of one Enqueue travel as one pack, decoded in order;
// a pack cut short, or with bytes after its last message, is an error.
func TestTailPackRoundTrips(t *testing.T) {
	s := &Store{tail: newTailNames("public", "outbox")}
	msgs := []outbox.Message{{Topic: "a", Key: "k", Payload: []byte("1")}, {Topic: "b", Payload: []byte("22")}, {Topic: "c", Key: "k"}}
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		t.Fatal(err)
	}
	_, args, err := s.tailStatement(msgs)
	if err != nil {
		t.Fatal(err)
	}
	content := args[1].([]byte)
	got, err := decodeContent(content)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("decoded %d messages, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		if got[i].ID != msgs[i].ID || got[i].Topic != msgs[i].Topic || string(got[i].Payload) != string(msgs[i].Payload) {
			t.Errorf("message %d: %+v, want %+v", i, got[i], msgs[i])
		}
	}
	if _, err := decodeContent(content[:len(content)-1]); err == nil {
		t.Error("a pack cut short decoded without error")
	}
	if _, err := decodeContent(append(content, 0)); err == nil {
		t.Error("a pack with a trailing byte decoded without error")
	}
}

// A slot dropped under running writers: once Enqueue checks again, it
// refuses to write messages that nothing would read.
func TestTailEnqueueRefusesWithoutSlot(t *testing.T) {
	t.Parallel()
	s := tailStore(t, Config{})
	ctx := context.Background()
	write := func() error {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		return s.Enqueue(ctx, tx, outbox.Message{Topic: "t", Payload: []byte("x")})
	}
	if err := write(); err != nil {
		t.Fatalf("Enqueue with the slot: %v", err)
	}
	if err := s.DropTail(ctx); err != nil {
		t.Fatal(err)
	}
	s.slotSeen.Store(0) // the recheck is due
	err := write()
	if !errors.Is(err, outbox.ErrSchemaMissing) || !strings.Contains(err.Error(), "outbox migrate --tail") {
		t.Fatalf("Enqueue without the slot: %v, want ErrSchemaMissing naming outbox migrate --tail", err)
	}
}

// The relay suite in the tailing mode with writers on database/sql,
// enqueueing with EnqueueSQL (one message, or a pack of several, as one
// []byte argument every driver sends).
func TestTailRelaySuiteThroughDatabaseSQL(t *testing.T) {
	t.Parallel()
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store: conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
			return sqlOutboxOf(t, tailStore(t, Config{Limits: opts.Limits, Lanes: opts.Lanes}))
		}},
		Broker:   conformance.MemoryBroker(),
		HoldOpen: 6 * time.Second,
	})
}

// A relay without Config.Tail on a table whose slot exists (writers that
// tail) does not poll in silence: TailLog fails with ErrInvalidConfig,
// naming the setting, and the relay logs it and tries again.
func TestTailSlotWithoutTailIsReported(t *testing.T) {
	t.Parallel()
	s := tailStore(t, Config{})
	polling, err := New(s.pool, Config{Schema: s.cfg.Schema})
	if err != nil {
		t.Fatal(err)
	}
	_, err = polling.TailLog(context.Background(), outbox.TailParams{Owner: "p"})
	if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "--tail") {
		t.Fatalf("TailLog without Config.Tail on a table with a slot: %v, want ErrInvalidConfig naming --tail", err)
	}
	if err := s.DropTail(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err = polling.TailLog(context.Background(), outbox.TailParams{Owner: "p"}); !errors.Is(err, outbox.ErrUnsupported) {
		t.Fatalf("TailLog without Config.Tail or slot: %v, want ErrUnsupported", err)
	}
}
