package outbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// TestRelayPausesOnlyTheUnavailableTopic: while the broker refuses one
// topic with ErrTopicUnavailable, the other topic flows; the refused topic
// is probed once per pause step (its records in other claims go back
// unpublished), no attempt is counted, nothing is dead-lettered, and the
// relay as a whole never pauses. When the topic is back, every message
// arrives in per-key order, also for a key with messages on both topics.
func TestRelayPausesOnlyTheUnavailableTopic(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store, inner := memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{})
	var broken atomic.Bool
	broken.Store(true)
	inner.SetReject(func(m outbox.Message) error {
		if m.Topic == "bad" && broken.Load() {
			return fmt.Errorf("%w: NOT_ENOUGH_REPLICAS: topic %q has fewer in-sync replicas than min.insync.replicas", outbox.ErrTopicUnavailable, m.Topic)
		}
		return nil
	})
	var probes atomic.Int32 // Publish calls that carried a message of the bad topic while it was broken
	pub := publishFunc(func(ctx context.Context, msgs []outbox.Message) []error {
		for _, m := range msgs {
			if m.Topic == "bad" && broken.Load() {
				probes.Add(1)
				break
			}
		}
		return inner.Publish(ctx, msgs)
	})

	// Key x has a message on each topic: the good one must wait for the bad.
	var want []outbox.Message
	want = append(want,
		outbox.Message{Topic: "bad", Key: "x", Payload: []byte("x-0")},
		outbox.Message{Topic: "good", Key: "x", Payload: []byte("x-1")})
	good := 0
	for i := range 60 {
		if i%2 == 0 {
			want = append(want, outbox.Message{Topic: "bad", Key: fmt.Sprint("b", i%10), Payload: fmt.Appendf(nil, "b-%02d", i)})
		} else {
			want = append(want, outbox.Message{Topic: "good", Key: fmt.Sprint("g", i%5), Payload: fmt.Appendf(nil, "g-%02d", i)})
			good++
		}
	}
	enqueue(t, store, want...)

	logs := &logCounter{}
	obs := &recordingObserver{}
	cfg := fastConfig(t)
	cfg.BatchSize = 10
	cfg.Concurrency = 2
	cfg.MaxAttempts = 2 // fewer than the probes below: they must not count
	cfg.Logger = slog.New(logs)
	cfg.Observer = obs
	run(t, store, pub, cfg)

	if err := inner.WaitFor(ctx, good); err != nil {
		t.Fatalf("the good topic did not flow while the bad one was refused: %v", err)
	}
	eventually(t, ctx, "the bad topic to be probed more often than MaxAttempts", func() bool { return probes.Load() > 3 })
	// A record of the paused topic that a claim returns goes back at once,
	// unpublished, with the rest of the pause as its delay. (The claim may
	// fall just after a pause, and then probes the topic: write another.)
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatalf("%d records of the paused topic written one by one were all published; want them handed back during the pause", i)
		}
		late := enqueue(t, store, outbox.Message{Topic: "bad", Key: fmt.Sprint("late", i), Payload: fmt.Appendf(nil, "late-%d", i)})
		want = append(want, late...)
		var o outbox.Outcome
		eventually(t, ctx, "a claim of the late record", func() bool {
			var ok bool
			o, ok = obs.outcomeOf(late[0].ID)
			return ok
		})
		if o.Status != outbox.Released {
			t.Fatalf("a record of the unavailable topic was %s; want it released", o.Status)
		}
		if o.Err == nil {
			if o.RetryIn <= 0 {
				t.Fatalf("a record of the paused topic was handed back without a delay: every claim would return it")
			}
			break
		}
	}
	for _, m := range inner.Messages() {
		if m.Topic != "good" || m.Key == "x" {
			t.Fatalf("published %s (topic %s, key %s) while the bad topic was refused; want only the good topic's messages of other keys", m.Payload, m.Topic, m.Key)
		}
	}
	broken.Store(false)
	if err := inner.WaitFor(ctx, len(want)); err != nil {
		t.Fatalf("the bad topic's messages did not arrive once it was back: %v", err)
	}

	got, exp := payloadsByKey(inner.Messages()), payloadsByKey(want)
	for key := range exp {
		if strings.Join(got[key], ",") != strings.Join(exp[key], ",") {
			t.Fatalf("key %s published as %v, want %v", key, got[key], exp[key])
		}
	}
	if dead, _ := store.ListDead(ctx, outbox.ListDeadParams{}); len(dead) != 0 {
		t.Fatalf("%d messages were dead-lettered while their topic was unavailable: %+v", len(dead), dead)
	}
	eventually(t, ctx, "every outcome recorded", func() bool { return obs.count(outbox.Delivered) == len(want) })
	obs.mu.Lock()
	for _, b := range obs.batches {
		for i, r := range b.Records {
			o := b.Outcomes[i]
			if o.Status == outbox.Delivered && r.Attempts != 0 {
				t.Errorf("%s was delivered at attempt %d; the batches its topic was unavailable for must not count", r.Payload, r.Attempts)
			}
			if o.Status == outbox.Retried || o.Status == outbox.DeadLettered {
				t.Errorf("%s was %s; a topic that is unavailable is no failure of the message", r.Payload, o.Status)
			}
		}
	}
	obs.mu.Unlock()

	// One probe per pause step: the steps are logged once each; besides,
	// the batches in flight when the topic first failed may have carried
	// it, and the probe that found it back.
	steps := logs.count("topic unavailable")
	if n := int(probes.Load()); steps == 0 || n > steps+cfg.Concurrency {
		t.Fatalf("%d publishes to the unavailable topic for %d pause steps logged; want one probe per step", n, steps)
	}
	if n := logs.count("broker unavailable"); n != 0 {
		t.Fatalf("the relay paused as a whole %d times for one unavailable topic", n)
	}
}
