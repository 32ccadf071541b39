package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

// Adversarial interleavings of the log-tailing relay (tail.go), against a
// fake stream that records what the relay parks and acknowledges.

// fakeLog is a LogStream whose table is the list of what was parked.
type fakeLog struct {
	parked []Parked
	acked  uint64

	parkFails int   // Park fails this many times first
	parkErr   error // with this error
}

func (f *fakeLog) Next(ctx context.Context, max int) ([]LogRecord, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (f *fakeLog) Ack(pos uint64) { f.acked = max(f.acked, pos) }
func (f *fakeLog) Park(_ context.Context, recs []Parked) error {
	if f.parkFails > 0 {
		f.parkFails--
		return f.parkErr
	}
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
		Owner: "a", StrictOrder: strict, PublishTimeout: 10 * time.Millisecond,
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

// TestAttackTailParkOutlastingPublishTimeoutKeepsTheBatch probes bounded
// duplicates (promise 4: a duplicate only follows a crash, a lost
// acknowledgement or an expired lease) when the store is slower than
// PublishTimeout: a batch in which the broker took r1 and rejected r2
// (key k, a retry) must park r2 before it is acknowledged. Before the
// fix, a Park that failed for PublishTimeout ended the stream with the
// batch unacknowledged, so the next holder (this relay again, once the
// store answered) published r1 a second time, though the relay held the
// log all along; now the relay parks again while the stream holds the
// log, and gives up only when Park says the log is lost (ErrLostLog).
func TestAttackTailParkOutlastingPublishTimeoutKeepsTheBatch(t *testing.T) {
	ctx := context.Background()
	pub := &scriptedPublisher{fail: func(m Message) error {
		if m.ID == "r2" {
			return errors.New("rejected")
		}
		return nil
	}}
	r := tailTestRelay(t, pub, false)
	s := &fakeLog{parkFails: 3, parkErr: fmt.Errorf("park: %w", ErrReadTimeout)}
	if err := r.publishLog(ctx, s, []LogRecord{logRec("r1", "j", 0), logRec("r2", "k", 10)}, map[string]bool{}); err != nil {
		t.Fatalf("publishLog gave the batch up while the stream holds the log: %v", err)
	}
	if len(s.parked) != 1 || s.parked[0].ID != "r2" {
		t.Fatalf("parked %+v, want r2", s.parked)
	}

	// A Park that says the log is lost ends the stream at once.
	s = &fakeLog{parkFails: 1 << 30, parkErr: fmt.Errorf("park: %w", ErrLostLog)}
	if err := r.publishLog(ctx, s, []LogRecord{logRec("r3", "k", 20)}, map[string]bool{"k": true}); !errors.Is(err, ErrLostLog) {
		t.Fatalf("publishLog with the log lost: %v, want ErrLostLog", err)
	}
}
