package natspub

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// TestBrokerDropsDuplicates proves the broker-side deduplication: the same
// message published twice is stored once, and JetStream says the second
// publish was a duplicate.
func TestBrokerDropsDuplicates(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := natsserver.URL(t)
	stream, prefix := natsserver.Stream(t, url)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := prepared(t,
		outbox.Message{Topic: prefix + ".a", Key: "k", Payload: []byte("one")},
		outbox.Message{Topic: prefix + ".a", Key: "k", Payload: []byte("two")},
		outbox.Message{Topic: prefix + ".b", Payload: []byte("three")},
	)
	for round := range 2 {
		for i, err := range pub.Publish(ctx, msgs) {
			if err != nil {
				t.Fatalf("round %d, message %d: %v", round, i, err)
			}
		}
	}
	if got := pub.Duplicates(); got != int64(len(msgs)) {
		t.Fatalf("Duplicates() = %d after publishing %d messages twice; want %d", got, len(msgs), len(msgs))
	}
	if n := streamInfo(t, ctx, url, stream).State.Msgs; n != uint64(len(msgs)) {
		t.Fatalf("the stream holds %d messages after publishing %d messages twice; want %d", n, len(msgs), len(msgs))
	}
	// The server's own verdict on a third copy.
	ack, err := js.Publish(ctx, msgs[0].Topic, msgs[0].Payload, jetstream.WithMsgID(msgs[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate {
		t.Fatalf("JetStream did not report a republished Nats-Msg-Id as a duplicate: %+v", ack)
	}
	stored := make(map[string]string)
	for _, r := range readStream(t, ctx, url, stream) {
		stored[r.ID] = string(r.Payload)
	}
	for _, m := range msgs {
		if p, ok := stored[m.ID]; !ok || p != string(m.Payload) {
			t.Fatalf("the stream holds %v; want %s with %q", stored, m.ID, m.Payload)
		}
	}
}

// TestRelayRepublishAfterLostAckIsDropped runs a relay whose first
// publishes "lose" their acknowledgements: the broker stored the messages
// but the relay saw errors, so it publishes them again. The stream must
// hold each message once.
func TestRelayRepublishAfterLostAckIsDropped(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := natsserver.URL(t)
	stream, prefix := natsserver.Stream(t, url)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	lossy := &loseAcks{Publisher: pub}
	lossy.remaining.Store(3)

	store := memory.NewStore(memory.StoreConfig{})
	ob := conformance.NewMemoryOutbox(store)
	ledger := conformance.NewLedger()
	const n = 300
	for i := 0; i < n; i += 10 {
		var batch []outbox.Message
		for j := range 10 {
			batch = append(batch, outbox.Message{Topic: prefix + ".events", Key: fmt.Sprintf("k%d", (i+j)%7)})
		}
		ledger.Committed(write(t, ctx, ob, batch...)...)
	}
	cfg := conformance.TestRelayConfig(t)
	cfg.Logger = discardLogger()
	stop := conformance.StartRelay(t, store, lossy, cfg)
	waitDrained(t, ctx, store)
	stop()

	if lossy.remaining.Load() > 0 {
		t.Fatalf("the relay published only %d batches", 3-lossy.remaining.Load())
	}
	if lossy.lost.Load() == 0 {
		t.Fatal("no acknowledgement was lost; the test proves nothing")
	}
	for _, r := range readStream(t, ctx, url, stream) {
		ledger.Receive(r)
	}
	rep := ledger.Report()
	t.Logf("%d acknowledgements lost and republished: %s", lossy.lost.Load(), rep)
	if !rep.Clean() || rep.Duplicates != 0 {
		t.Fatalf("want every message once, in key order: %s", rep)
	}
	if got := streamInfo(t, ctx, url, stream).State.Msgs; got != n {
		t.Fatalf("the stream holds %d messages; want %d", got, n)
	}
	if got, want := pub.Duplicates(), lossy.lost.Load(); got != want {
		t.Fatalf("JetStream acknowledged %d publishes as duplicates; want one per lost acknowledgement, %d", got, want)
	}
}

// loseAcks reports the messages of its first batches as failed although
// the broker accepted them, as a relay sees a publish whose acknowledgement
// was lost.
type loseAcks struct {
	outbox.Publisher
	remaining atomic.Int32 // batches still to "lose"
	lost      atomic.Int64 // acknowledgements lost
}

var errLostAck = errors.New("simulated: acknowledgement lost")

func (p *loseAcks) Publish(ctx context.Context, msgs []outbox.Message) []error {
	res := p.Publisher.Publish(ctx, msgs)
	if p.remaining.Add(-1) < 0 {
		return res
	}
	for i, err := range res {
		if err == nil {
			res[i] = errLostAck
			p.lost.Add(1)
		}
	}
	return res
}

// write commits msgs in one transaction of ob and returns them with IDs.
func write(t *testing.T, ctx context.Context, ob conformance.Outbox, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	tx, err := ob.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// waitDrained waits until the store has nothing pending and no dead letter.
func waitDrained(t *testing.T, ctx context.Context, store *memory.Store) {
	t.Helper()
	eventually(t, ctx, "the outbox to drain", func() bool {
		st, err := store.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Dead > 0 {
			dead, _ := store.ListDead(ctx, outbox.ListDeadParams{})
			t.Fatalf("%d dead letters, e.g. %s: %s", st.Dead, dead[0].ID, dead[0].LastError)
		}
		return st.Pending == 0
	})
}
