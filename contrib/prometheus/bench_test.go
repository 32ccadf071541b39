package outboxprom_test

import (
	"fmt"
	"testing"
	"time"

	outboxprom "github.com/txoutbox/txoutbox/contrib/prometheus"
	outbox "github.com/txoutbox/txoutbox/core"
)

// BenchmarkObserveBatch measures the cost of recording one batch of 500
// messages (the relay's default batch size), all delivered, with and
// without a topic label (10 topics).
func BenchmarkObserveBatch(b *testing.B) {
	for _, c := range []struct {
		name  string
		topic func(string) string
	}{
		{"no-topic", nil},
		{"topic", func(t string) string { return t }},
	} {
		b.Run(c.name, func(b *testing.B) {
			obs, err := outboxprom.NewObserver(outboxprom.ObserverConfig{TopicLabel: c.topic})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			e := outbox.BatchEvent{PublishDuration: time.Millisecond, PublishedAt: now}
			for i := range 500 {
				e.Records = append(e.Records, outbox.Record{Message: outbox.Message{Topic: fmt.Sprintf("topic-%d", i%10), CreatedAt: now.Add(-time.Second)}})
				e.Outcomes = append(e.Outcomes, outbox.Outcome{Status: outbox.Delivered})
			}
			b.ReportAllocs()
			for b.Loop() {
				obs.ObserveBatch(e)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(e.Records)), "ns/msg")
		})
	}
}
