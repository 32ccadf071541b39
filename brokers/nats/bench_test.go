package natspub

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Benchmarks publish b.N messages of 256 bytes with one user header, in
// batches of benchBatch (the relay's default batch size), and wait for every
// acknowledgement of a batch before the next, as the relay does. Run them
// together so that they share the server's state:
//
//	go test -run '^$' -bench 'Publish' -benchtime 100000x
const (
	benchBatch   = 500
	benchPayload = 256
)

// benchMessages returns n messages to subject; keys is the number of
// distinct keys in each batch (0: every message has a key of its own).
func benchMessages(b *testing.B, subject string, n, keys int) []outbox.Message {
	b.Helper()
	payload := bytes.Repeat([]byte("x"), benchPayload)
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		key := fmt.Sprintf("key-%d", i)
		if keys > 0 {
			key = fmt.Sprintf("key-%d", i%keys)
		}
		msgs[i] = outbox.Message{Topic: subject, Key: key, Payload: payload,
			Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	}
	if err := outbox.Prepare(msgs, outbox.Limits{}); err != nil {
		b.Fatal(err)
	}
	return msgs
}

// BenchmarkPublish measures Publisher.Publish. keys=all gives every message
// its own key (many aggregates: the whole window pipelines); keys=50 sends
// ten messages per key in each batch of 500; keys=1 is the worst case, one
// key, where each message waits for the acknowledgement of the one before.
func BenchmarkPublish(b *testing.B) {
	for _, bc := range []struct {
		name string
		keys int
	}{{"keys=all", 0}, {"keys=50", 50}, {"keys=1", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			url := natsserver.URL(b)
			_, prefix := natsserver.Stream(b, url)
			js, err := jetstream.New(connect(b, url))
			if err != nil {
				b.Fatal(err)
			}
			pub, err := New(js, Config{})
			if err != nil {
				b.Fatal(err)
			}
			msgs := benchMessages(b, prefix+".bench", b.N, bc.keys)
			b.SetBytes(benchPayload)
			b.ResetTimer()
			for start := 0; start < len(msgs); start += benchBatch {
				for i, err := range pub.Publish(b.Context(), msgs[start:min(start+benchBatch, len(msgs))]) {
					if err != nil {
						b.Fatalf("message %d: %v", start+i, err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkRawPublishAsync is the baseline: the same messages through
// jetstream's PublishMsgAsync with the same headers (Nats-Msg-Id, the key,
// the user header), waiting for PublishAsyncComplete after each batch and
// counting errors in the context's error handler. It keeps no per-key
// order after a failure.
func BenchmarkRawPublishAsync(b *testing.B) {
	url := natsserver.URL(b)
	_, prefix := natsserver.Stream(b, url)
	raw := newRawPublisher(b, url)
	msgs := benchMessages(b, prefix+".bench", b.N, 0)
	b.SetBytes(benchPayload)
	b.ResetTimer()
	for start := 0; start < len(msgs); start += benchBatch {
		raw.publish(b, msgs[start:min(start+benchBatch, len(msgs))])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPublishVsRaw alternates, batch by batch, Publisher.Publish and
// the raw PublishMsgAsync baseline on the same stream, so that both see the
// same server state and the same load from the rest of the machine, and
// reports ratio = Publish throughput / raw throughput. Messages have a key
// each (keys=all).
func BenchmarkPublishVsRaw(b *testing.B) {
	url := natsserver.URL(b)
	_, prefix := natsserver.Stream(b, url)
	js, err := jetstream.New(connect(b, url))
	if err != nil {
		b.Fatal(err)
	}
	pub, err := New(js, Config{})
	if err != nil {
		b.Fatal(err)
	}
	raw := newRawPublisher(b, url)
	ours := benchMessages(b, prefix+".publish", b.N, 0)
	theirs := benchMessages(b, prefix+".raw", b.N, 0)
	var tOurs, tRaw time.Duration
	b.ResetTimer()
	for n, start := 0, 0; start < b.N; n, start = n+1, start+benchBatch {
		end := min(start+benchBatch, b.N)
		runOurs := func() {
			t0 := time.Now()
			for i, err := range pub.Publish(b.Context(), ours[start:end]) {
				if err != nil {
					b.Fatalf("message %d: %v", start+i, err)
				}
			}
			tOurs += time.Since(t0)
		}
		runRaw := func() {
			t0 := time.Now()
			raw.publish(b, theirs[start:end])
			tRaw += time.Since(t0)
		}
		if n%2 == 0 {
			runOurs()
			runRaw()
		} else {
			runRaw()
			runOurs()
		}
	}
	b.ReportMetric(float64(b.N)/tOurs.Seconds(), "publish-msgs/s")
	b.ReportMetric(float64(b.N)/tRaw.Seconds(), "raw-msgs/s")
	b.ReportMetric(tRaw.Seconds()/tOurs.Seconds(), "ratio")
}

// rawPublisher publishes with jetstream's PublishMsgAsync alone.
type rawPublisher struct {
	js     jetstream.JetStream
	failed atomic.Int64
}

func newRawPublisher(b *testing.B, url string) *rawPublisher {
	r := &rawPublisher{}
	js, err := jetstream.New(connect(b, url), jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) {
		r.failed.Add(1)
	}))
	if err != nil {
		b.Fatal(err)
	}
	r.js = js
	return r
}

// publish sends msgs as they would be by hand and waits until all are
// acknowledged.
func (r *rawPublisher) publish(b *testing.B, msgs []outbox.Message) {
	for _, m := range msgs {
		h := nats.Header{}
		for name, value := range m.Headers {
			h.Set(name, value)
		}
		h.Set(HeaderKey, m.Key)
		msg := &nats.Msg{Subject: m.Topic, Data: m.Payload, Header: h}
		if _, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID)); err != nil {
			b.Fatal(err)
		}
	}
	<-r.js.PublishAsyncComplete()
	if n := r.failed.Load(); n > 0 {
		b.Fatalf("%d publishes failed", n)
	}
}
