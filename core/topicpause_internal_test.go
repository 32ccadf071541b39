package outbox

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestTopicPauses walks one topic through a failure streak on a clock of
// the test's own: the pause holds its records and no other topic's, one
// batch probes it when the pause ends while the others wait, failures of
// one step count once, and a delivery ends the streak.
func TestTopicPauses(t *testing.T) {
	t.Parallel()
	p := newTopicPauses(slog.New(slog.DiscardHandler), 200*time.Millisecond, 15*time.Second)
	recs := []Record{{Message: Message{Topic: "bad"}}, {Message: Message{Topic: "good"}}, {Message: Message{Topic: "bad"}}}
	now := time.Unix(1_000_000, 0)
	refused := errors.New("NOT_ENOUGH_REPLICAS")

	if waits, probes := p.hold(recs, now); waits != nil || probes != nil {
		t.Fatalf("hold without a failure = %v, %v; want nothing held", waits, probes)
	}
	step := p.failure("bad", refused, now, false)
	if step < 100*time.Millisecond || step > 200*time.Millisecond {
		t.Fatalf("first pause %v; want 200ms less jitter of up to a half", step)
	}
	if again := p.failure("bad", refused, now.Add(time.Millisecond), false); again != step-time.Millisecond {
		t.Fatalf("a second failure in the same step returned %v; want the rest of the step, %v", again, step-time.Millisecond)
	}
	waits, probes := p.hold(recs, now.Add(10*time.Millisecond))
	if len(waits) != 1 || waits["bad"] != step-10*time.Millisecond || probes != nil {
		t.Fatalf("hold during the pause = %v, %v; want bad held for the rest of the pause, good free", waits, probes)
	}

	end := now.Add(step)
	waits, probes = p.hold(recs, end)
	if waits != nil || len(probes) != 1 || probes[0] != "bad" {
		t.Fatalf("hold when the pause ended = %v, %v; want this batch to probe bad", waits, probes)
	}
	if other, none := p.hold(recs, end); other["bad"] != max(step, 200*time.Millisecond) || none != nil {
		t.Fatalf("hold while another batch probes = %v, %v; want bad held for a step (at least 200ms)", other, none)
	}
	// The probe fails: the next step is longer (less jitter), counted once.
	next := p.failure("bad", refused, end, true)
	if next < 200*time.Millisecond || next > 400*time.Millisecond {
		t.Fatalf("second pause %v; want 400ms less jitter of up to a half", next)
	}
	p.finish(probes, func(string) bool { return true }) // this batch's probe failed: nothing to end
	if p.topics["bad"] == nil || p.topics["bad"].fails != 2 {
		t.Fatalf("streak after two failed steps: %+v; want 2 failures", p.topics["bad"])
	}

	// A probe that settles nothing leaves the streak for the next batch.
	end = end.Add(next)
	_, probes = p.hold(recs, end)
	p.finish(probes, func(string) bool { return false })
	_, probes = p.hold(recs, end)
	if len(probes) != 1 {
		t.Fatalf("after a probe without an answer, hold = %v; want a new probe", probes)
	}
	// A probe that delivers ends the streak.
	p.finish(probes, func(topic string) bool { return topic == "bad" })
	if waits, probes := p.hold(recs, end); waits != nil || probes != nil || len(p.topics) != 0 {
		t.Fatalf("after a delivery, hold = %v, %v (state %v); want the streak over", waits, probes, p.topics)
	}
}

// A batch in flight since before a topic's pause fails while the probe of a
// later step is out: its failure counts the step, but the probe goes on,
// and no other batch probes until the probe's own answer.
func TestTopicPauseStaleFailureKeepsTheProbe(t *testing.T) {
	t.Parallel()
	p := newTopicPauses(slog.New(slog.DiscardHandler), 200*time.Millisecond, 15*time.Second)
	recs := []Record{{Message: Message{Topic: "bad"}}}
	now := time.Unix(1_000_000, 0)
	refused := errors.New("NOT_ENOUGH_REPLICAS")
	end := now.Add(p.failure("bad", refused, now, false))
	_, probes := p.hold(recs, end)
	if len(probes) != 1 {
		t.Fatalf("hold when the pause ended = %v; want a probe", probes)
	}
	stale := p.failure("bad", refused, end, false) // not the probe
	if _, again := p.hold(recs, end.Add(stale)); again != nil {
		t.Fatalf("hold after a stale failure, the probe still out = probes %v; want none", again)
	}
	p.failure("bad", refused, end.Add(stale), true) // the probe's answer
	p.finish(probes, func(string) bool { return false })
	if _, next := p.hold(recs, end.Add(time.Hour)); len(next) != 1 {
		t.Fatalf("hold after the probe failed and its pause ended = %v; want a new probe", next)
	}
}
