package outbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// Adversarial interleavings of the log-tailing relay (tail.go), against a
// fake stream that records what the relay parks and acknowledges.

// fakeLog is a LogStream whose table is the list of what was parked.
type fakeLog struct {
	parked []Parked
	acked  uint64
}

func (f *fakeLog) Next(ctx context.Context, max int) ([]LogRecord, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (f *fakeLog) Ack(pos uint64) { f.acked = max(f.acked, pos) }
func (f *fakeLog) Park(_ context.Context, recs []Parked) error {
	f.parked = append(f.parked, recs...)
	return nil
}
func (f *fakeLog) ParkedKeys(context.Context, bool) ([]string, error) { return nil, nil }
func (f *fakeLog) Renew()                                             {}
func (f *fakeLog) Close() error                                       { return nil }

// scriptedPublisher returns, for each message, the error fail gives it (in
// slice order, ErrNotAttempted for the later messages of a key that
// failed, as the Publisher contract asks), and lists what it accepted.
type scriptedPublisher struct {
	fail func(Message) error
	sent []string
}

func (p *scriptedPublisher) Publish(_ context.Context, msgs []Message) []error {
	res := make([]error, len(msgs))
	failed := map[string]bool{}
	for i, m := range msgs {
		switch {
		case m.Key != "" && failed[m.Key]:
			res[i] = ErrNotAttempted
		case p.fail(m) != nil:
			res[i] = p.fail(m)
			failed[m.Key] = m.Key != ""
		default:
			p.sent = append(p.sent, m.ID)
		}
	}
	return res
}

func tailTestRelay(t *testing.T, pub Publisher, strict bool) *Relay {
	t.Helper()
	r, err := NewRelay(struct{ Store }{}, pub, RelayConfig{
		Owner: "a", StrictOrder: strict,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func logRec(id, key string, ckpt uint64) LogRecord {
	return LogRecord{Record: Record{Message: Message{ID: id, Topic: "t", Key: key}}, Checkpoint: ckpt}
}

// TestAttackTailDeadLetterParksFollowerAndItsKey probes per-key order
// (promise 3) in the default, non-strict mode: a poison record p of key k
// and the next record q of k come in one batch. The broker rejects p for
// good, and q, behind it in the same call, is not attempted. p is parked
// as a dead letter, and q is parked as a pending record (it may go now
// that p is dead, but the lanes relay publishes it, later). Before the
// fix, k was not added to the parked keys (only a retry, or a dead letter
// in strict order, added it), so the next record r of k, from the next
// batch, was published straight from the log while q waited in the table:
// r reached the broker before q.
func TestAttackTailDeadLetterParksFollowerAndItsKey(t *testing.T) {
	ctx := context.Background()
	pub := &scriptedPublisher{fail: func(m Message) error {
		if m.ID == "p" {
			return Permanent(errors.New("poison"))
		}
		return nil
	}}
	r := tailTestRelay(t, pub, false)
	s := &fakeLog{}
	parked := map[string]bool{}
	if err := r.publishLog(ctx, s, []LogRecord{logRec("p", "k", 0), logRec("q", "k", 10)}, parked); err != nil {
		t.Fatal(err)
	}
	if len(s.parked) != 2 || !s.parked[0].Dead || s.parked[1].ID != "q" || s.parked[1].Dead {
		t.Fatalf("parked %+v, want p dead then q pending", s.parked)
	}
	if err := r.publishLog(ctx, s, []LogRecord{logRec("r", "k", 20)}, parked); err != nil {
		t.Fatal(err)
	}
	for _, id := range pub.sent {
		if id == "r" {
			t.Fatalf("r was published from the log while q, before it in k, waits in the table (parked: %+v)", s.parked)
		}
	}
	if len(s.parked) != 3 || s.parked[2].ID != "r" {
		t.Fatalf("parked %+v, want r parked behind q", s.parked)
	}
}
