package outboxprom_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// testContext is a context that ends with the test, or after a minute.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// registry returns a fresh registry holding cs.
func registry(t testing.TB, cs ...prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatalf("Register: %v", err)
		}
	}
	return reg
}

// sample is one gathered series: its value (counters, gauges) or its
// sample count and sum (histograms).
type sample struct {
	value float64
	count uint64
	sum   float64
}

// gather returns the series of metric name whose labels include want,
// keyed by nothing when exactly one matches; it fails t when none or
// several match.
func gather(t testing.TB, reg prometheus.Gatherer, name string, want ...string) sample {
	t.Helper()
	if len(want)%2 != 0 {
		t.Fatalf("gather: labels must come in name, value pairs")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var found []sample
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i < len(want); i += 2 {
				if have[want[i]] != want[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				found = append(found, sample{value: m.GetCounter().GetValue()})
			case m.GetGauge() != nil:
				found = append(found, sample{value: m.GetGauge().GetValue()})
			case m.GetHistogram() != nil:
				found = append(found, sample{count: m.GetHistogram().GetSampleCount(), sum: m.GetHistogram().GetSampleSum()})
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d series of %s with labels %v, want 1", len(found), name, want)
	}
	return found[0]
}

// waitDelivered waits until the broker holds every message of msgs (by ID;
// duplicates do not count twice).
func waitDelivered(t testing.TB, ctx context.Context, broker *memory.Publisher, msgs ...outbox.Message) {
	t.Helper()
	for {
		got := make(map[string]bool)
		for _, m := range broker.Messages() {
			got[m.ID] = true
		}
		missing := 0
		for _, m := range msgs {
			if !got[m.ID] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d messages never reached the broker", missing, len(msgs))
		case <-time.After(5 * time.Millisecond):
		}
	}
}
