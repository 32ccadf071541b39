package conformance

import (
	"bytes"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

var atomicityTests = []storeTest{
	{"CommitMakesVisible", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", 3)...)
		recs := pending(t, ctx, ob.Store, 10)
		if got, want := recordIDs(recs), messageIDs(msgs); !equalStrings(got, want) {
			t.Fatalf("read %v after commit, want %v", got, want)
		}
	}},
	{"UncommittedIsInvisible", func(t *testing.T, h StoreHarness) {
		requireTransactions(t, h)
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		tx, err := ob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		msgs := newMessages("t", "k", 2)
		if err := tx.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if recs := pending(t, ctx, ob.Store, 10); len(recs) != 0 {
			t.Fatalf("read %d records of an open transaction", len(recs))
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if recs := pending(t, ctx, ob.Store, 10); len(recs) != 2 {
			t.Fatalf("read %d records after commit, want 2", len(recs))
		}
	}},
	{"RollbackLeavesNothing", func(t *testing.T, h StoreHarness) {
		requireTransactions(t, h)
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		tx, err := ob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Enqueue(ctx, newMessages("t", "k", 3)...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		after := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		if recs := pending(t, ctx, ob.Store, 10); !equalStrings(recordIDs(recs), messageIDs(after)) {
			t.Fatalf("read %v; only the committed %v should exist", recordIDs(recs), messageIDs(after))
		}
	}},
	{"PanicLeavesNothing", func(t *testing.T, h StoreHarness) {
		requireTransactions(t, h)
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		func() {
			defer func() { _ = recover() }()
			tx, err := ob.Begin(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { _ = tx.Rollback(ctx) }() // the usual idiom: the deferred rollback runs while panicking
			if err := tx.Enqueue(ctx, newMessages("t", "k", 2)...); err != nil {
				t.Error(err)
				return
			}
			panic("business logic failed after enqueue")
		}()
		if recs := pending(t, ctx, ob.Store, 10); len(recs) != 0 {
			t.Fatalf("read %d records of a transaction that panicked", len(recs))
		}
	}},
	{"InvalidMessageWritesNothing", func(t *testing.T, h StoreHarness) {
		requireTransactions(t, h)
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		tx, err := ob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		err = tx.Enqueue(ctx, outbox.Message{Topic: "t", Key: "ok"}, outbox.Message{Key: "no topic"})
		if !errors.Is(err, outbox.ErrInvalidMessage) || !errors.Is(err, outbox.ErrMissingTopic) {
			t.Fatalf("Enqueue with a message without topic returned %v, want ErrInvalidMessage and ErrMissingTopic", err)
		}
		// The transaction is still the caller's to commit: the valid message
		// must not have been written either.
		_ = tx.Commit(ctx)
		if recs := pending(t, ctx, ob.Store, 10); len(recs) != 0 {
			t.Fatalf("read %d records after a rejected Enqueue", len(recs))
		}
	}},
	{"ConcurrentWritersAllVisible", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		const writers = 8
		per := h.scale(25)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range per {
					if err := tryWrite(ctx, ob, outbox.Message{Topic: "t", Key: keyName(w), Payload: []byte{byte(i)}}); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if got := len(drain(t, ctx, ob.Store, "a")); got != writers*per {
			t.Fatalf("drained %d records, want %d", got, writers*per)
		}
	}},
}

var enqueueTests = []storeTest{
	{"FieldsRoundTrip", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		binary := make([]byte, 256)
		for i := range binary {
			binary[i] = byte(i)
		}
		created := time.Date(2024, 2, 29, 12, 34, 56, 789_000_000, time.UTC)
		msgs := []outbox.Message{
			{
				ID:        "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
				Topic:     "orders.created",
				Key:       "order-ü-42",
				Payload:   binary,
				Headers:   map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Empty": "", "lang": "日本語"},
				CreatedAt: created,
			},
			{Topic: "t", Payload: []byte{}},
			{Topic: "t", Key: "k"},
		}
		write(t, ctx, ob, msgs...)
		recs := pending(t, ctx, ob.Store, 10)
		if len(recs) != len(msgs) {
			t.Fatalf("read %d records, want %d", len(recs), len(msgs))
		}
		byID := make(map[string]outbox.Record)
		for _, r := range recs {
			byID[r.ID] = r
		}
		for _, m := range msgs {
			r, ok := byID[m.ID]
			if !ok {
				t.Fatalf("message %s was not read", m.ID)
			}
			if r.Topic != m.Topic || r.Key != m.Key || !bytes.Equal(r.Payload, m.Payload) {
				t.Errorf("record %s = topic %q key %q payload %x, want %q %q %x", m.ID, r.Topic, r.Key, r.Payload, m.Topic, m.Key, m.Payload)
			}
			if len(m.Headers) > 0 && !maps.Equal(r.Headers, m.Headers) || len(m.Headers) == 0 && len(r.Headers) != 0 {
				t.Errorf("record %s headers = %v, want %v", m.ID, r.Headers, m.Headers)
			}
			if d := r.CreatedAt.Sub(m.CreatedAt).Abs(); d > time.Millisecond {
				t.Errorf("record %s CreatedAt = %v, want %v (within 1ms)", m.ID, r.CreatedAt, m.CreatedAt)
			}
			if r.Attempts != 0 || r.LastError != "" || !r.NotBefore.IsZero() {
				t.Errorf("record %s Attempts=%d LastError=%q NotBefore=%v before any attempt, want 0, empty and zero", m.ID, r.Attempts, r.LastError, r.NotBefore)
			}
			if want := outbox.LaneOf(m.Key, m.ID, outbox.DefaultLanes); r.Lane != want {
				t.Errorf("record %s (key %q) is in lane %d, want LaneOf = %d", m.ID, m.Key, r.Lane, want)
			}
		}
	}},
	{"AssignsIDs", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", 3)...)
		seen := make(map[string]bool)
		for _, m := range msgs {
			if _, ok := outbox.IDTime(m.ID); !ok {
				t.Errorf("Enqueue assigned %q, want a UUIDv7", m.ID)
			}
			if seen[m.ID] {
				t.Errorf("Enqueue assigned %q twice", m.ID)
			}
			seen[m.ID] = true
			if m.CreatedAt.IsZero() {
				t.Errorf("Enqueue left CreatedAt zero")
			}
		}
	}},
	{"ManyInOneCall", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		msgs := write(t, ctx, ob, newMessages("t", "k", h.scale(1000))...)
		got := drain(t, ctx, ob.Store, "a")
		if !equalStrings(recordIDs(got), messageIDs(msgs)) {
			t.Fatalf("drained %d records out of write order; want the %d written, in order", len(got), len(msgs))
		}
	}},
	{"DuplicateIDRejected", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{})
		first := write(t, ctx, ob, outbox.Message{Topic: "t", Key: "k"})
		if err := tryWrite(ctx, ob, outbox.Message{ID: first[0].ID, Topic: "t", Key: "k"}); err == nil {
			t.Fatalf("a second message with ID %s was accepted", first[0].ID)
		}
		if recs := drain(t, ctx, ob.Store, "a"); len(recs) != 1 {
			t.Fatalf("drained %d records, want the first one only", len(recs))
		}
	}},
	{"ValidationErrors", func(t *testing.T, h StoreHarness) {
		ctx := testContext(t)
		ob := h.New(t, OutboxOptions{Limits: outbox.Limits{MaxPayloadBytes: 1024}})
		cases := []struct {
			name string
			msg  outbox.Message
			want error
		}{
			{"missing topic", outbox.Message{Key: "k"}, outbox.ErrMissingTopic},
			{"bad ID", outbox.Message{ID: "not-a-uuid", Topic: "t"}, outbox.ErrInvalidID},
			{"topic with space", outbox.Message{Topic: "a b"}, outbox.ErrInvalidTopic},
			{"key too long", outbox.Message{Topic: "t", Key: strings.Repeat("k", outbox.MaxKeyBytes+1)}, outbox.ErrInvalidKey},
			{"payload over the configured limit", outbox.Message{Topic: "t", Payload: make([]byte, 1025)}, outbox.ErrPayloadTooLarge},
			{"header name not a token", outbox.Message{Topic: "t", Headers: map[string]string{"bad name": "v"}}, outbox.ErrInvalidHeader},
			{"reserved header", outbox.Message{Topic: "t", Headers: map[string]string{"Nats-Msg-Id": "v"}}, outbox.ErrInvalidHeader},
			{"header value with newline", outbox.Message{Topic: "t", Headers: map[string]string{"h": "a\nb"}}, outbox.ErrInvalidHeader},
		}
		for _, c := range cases {
			err := tryWrite(ctx, ob, c.msg)
			if !errors.Is(err, c.want) || !errors.Is(err, outbox.ErrInvalidMessage) {
				t.Errorf("%s: got %v, want an error matching %v and ErrInvalidMessage", c.name, err, c.want)
			}
		}
		if err := tryWrite(ctx, ob, outbox.Message{Topic: "t", Payload: make([]byte, 1024)}); err != nil {
			t.Errorf("a payload at the limit was rejected: %v", err)
		}
		if recs := drain(t, ctx, ob.Store, "a"); len(recs) != 1 {
			t.Fatalf("drained %d records, want only the valid one", len(recs))
		}
	}},
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func keyName(i int) string { return "key-" + strconv.Itoa(i) }
