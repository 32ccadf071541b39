package kafkapub_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// The benchmarks publish batches of benchBatch messages of benchPayload
// bytes, the relay's default batch size, one batch after the other, to a
// kfake cluster that discards what it is sent (kfake.BlackholeProduce, so
// that the fake broker's storage does not hide the clients' costs).
// BenchmarkPublish goes through Publisher.Publish. BenchmarkRawProduce
// builds the same records from the same messages the way application code
// would, and produces them with the same client settings straight with
// kgo, waiting for each batch like Publish does, but without holding any
// key back; the ratio of their msgs/s is what the publisher costs over
// writing the kgo code yourself. BenchmarkRawProduceReused produces
// records built once before the timer starts, over and over: kgo's own
// floor, with no application work at all.
const (
	benchBatch   = 500
	benchPayload = 256
)

// benchKeys are the key spreads measured: every message with a key of its
// own (an aggregate ID per event, the common case), 64 hot keys (about
// eight messages of a key per batch, each waiting for the previous one),
// and no keys at all.
var benchKeys = []struct {
	name string
	keys int // 0: no key
}{{"keys=unique", 1 << 30}, {"keys=64", 64}, {"keys=none", 0}}

var bench struct {
	once    sync.Once
	cluster *kfake.Cluster
	err     error
}

const benchTopic = "bench"

// benchCluster is one fake cluster shared by both benchmarks of a run. It
// is warmed up first (connections, buffers, heap size), so that the
// benchmark that happens to run first does not pay for it.
func benchCluster(b *testing.B) []string {
	bench.once.Do(func() {
		bench.cluster, bench.err = kfake.NewCluster(kfake.NumBrokers(1), kfake.BlackholeProduce(),
			kfake.SeedTopics(testPartitions, benchTopic))
		if bench.err != nil {
			return
		}
		cl := newClient(b, kafkapub.DialConfig{Brokers: bench.cluster.ListenAddrs()})
		for _, msgs := range benchMessages(b, 1000) {
			for range 4 {
				var recs []*kgo.Record
				for _, m := range msgs {
					recs = append(recs, rawRecord(m))
				}
				if bench.err = cl.ProduceSync(context.Background(), recs...).FirstErr(); bench.err != nil {
					return
				}
			}
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.cluster.ListenAddrs()
}

// benchMessages returns batches of prepared messages with keys drawn from
// keys keys (none when keys is 0).
func benchMessages(b *testing.B, keys int) [][]outbox.Message {
	rng := rand.New(rand.NewPCG(1, 2))
	batches := make([][]outbox.Message, 16)
	for i := range batches {
		msgs := make([]outbox.Message, benchBatch)
		for j := range msgs {
			payload := make([]byte, benchPayload)
			for k := range payload {
				payload[k] = byte(rng.IntN(256))
			}
			msgs[j] = outbox.Message{Topic: benchTopic, Payload: payload, Headers: map[string]string{"content-type": "application/octet-stream"}}
			if keys > 0 {
				msgs[j].Key = fmt.Sprintf("aggregate-%d", rng.IntN(keys))
			}
		}
		prepare(b, msgs)
		batches[i] = msgs
	}
	return batches
}

// startRate returns a function that reports msgs/s, and the CPU time of
// the whole process (client, fake broker and all) per message: on a busy
// machine the CPU time varies less than the wall time.
func startRate(b *testing.B) (report func()) {
	cpu0 := processCPU()
	return func() {
		msgs := float64(b.N) * benchBatch
		b.ReportMetric(msgs/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/msgs, "cpu-ns/msg")
		b.ReportMetric(0, "ns/op")
	}
}

// processCPU is the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkPublish(b *testing.B) {
	brokers := benchCluster(b)
	for _, spread := range benchKeys {
		b.Run(spread.name, func(b *testing.B) {
			batches := benchMessages(b, spread.keys)
			pub := dial(b, kafkapub.DialConfig{Brokers: brokers})
			ctx := context.Background()
			report := startRate(b)
			i := 0
			for b.Loop() {
				for _, err := range pub.Publish(ctx, batches[i%len(batches)]) {
					if err != nil {
						b.Fatal(err)
					}
				}
				i++
			}
			report()
		})
	}
}

func BenchmarkRawProduce(b *testing.B) {
	benchRaw(b, func(msgs []outbox.Message) func() []*kgo.Record {
		return func() []*kgo.Record {
			recs := make([]*kgo.Record, len(msgs))
			for i, m := range msgs {
				recs[i] = rawRecord(m)
			}
			return recs
		}
	})
}

func BenchmarkRawProduceReused(b *testing.B) {
	benchRaw(b, func(msgs []outbox.Message) func() []*kgo.Record {
		recs := make([]*kgo.Record, len(msgs))
		for i, m := range msgs {
			recs[i] = rawRecord(m)
		}
		return func() []*kgo.Record { return recs }
	})
}

// benchRaw produces batches straight with kgo; records returns, for the
// messages of a batch, the function that gives its records on each round.
func benchRaw(b *testing.B, records func([]outbox.Message) func() []*kgo.Record) {
	brokers := benchCluster(b)
	for _, spread := range benchKeys {
		b.Run(spread.name, func(b *testing.B) {
			var batches []func() []*kgo.Record
			for _, msgs := range benchMessages(b, spread.keys) {
				batches = append(batches, records(msgs))
			}
			cl := newClient(b, kafkapub.DialConfig{Brokers: brokers})
			ctx := context.Background()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var firstErr error
			promise := func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
				wg.Done()
			}
			report := startRate(b)
			i := 0
			for b.Loop() {
				recs := batches[i%len(batches)]()
				wg.Add(len(recs))
				for _, r := range recs {
					cl.Produce(ctx, r, promise)
				}
				wg.Wait()
				if firstErr != nil {
					b.Fatal(firstErr)
				}
				i++
			}
			report()
		})
	}
}

// rawRecord is the record of m as a hand-written producer would build it:
// the same topic, key, value and headers as Publish sends.
func rawRecord(m outbox.Message) *kgo.Record {
	r := &kgo.Record{Topic: m.Topic, Value: m.Payload, Headers: []kgo.RecordHeader{{Key: kafkapub.IDHeader, Value: []byte(m.ID)}}}
	if m.Key != "" {
		r.Key = []byte(m.Key)
	}
	for k, v := range m.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return r
}
