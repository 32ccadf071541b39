package outboxprom_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	outboxprom "github.com/txoutbox/txoutbox/contrib/prometheus"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// An in-process relay reports to an Observer; the registry behind /metrics
// exposes it.
func ExampleNewObserver() {
	ctx := context.Background()
	store := memory.NewStore(memory.StoreConfig{})
	broker := memory.NewPublisher(memory.PublisherConfig{})

	obs, err := outboxprom.NewObserver(outboxprom.ObserverConfig{})
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	reg.MustRegister(obs)

	relay, err := outbox.NewRelay(store, broker, outbox.RelayConfig{
		Observer: obs,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(runCtx) }()

	tx := store.Begin()
	_ = store.Enqueue(ctx, tx,
		outbox.Message{Topic: "user.updated", Key: "user-42"},
		outbox.Message{Topic: "user.updated", Key: "user-43"})
	_ = tx.Commit()
	_ = broker.WaitFor(ctx, 2)
	stop()
	<-done

	// What Prometheus scrapes from /metrics, a few of the series.
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer func() { _ = resp.Body.Close() }()
	series := bufio.NewScanner(resp.Body)
	for series.Scan() {
		line := series.Text()
		if strings.HasPrefix(line, "txoutbox_relay_failed_total") || strings.HasPrefix(line, "txoutbox_relay_published_total") ||
			strings.HasPrefix(line, "txoutbox_relay_publish_lag_seconds_count") {
			fmt.Println(line)
		}
	}
	// Output:
	// txoutbox_relay_failed_total{outcome="dead_lettered"} 0
	// txoutbox_relay_failed_total{outcome="released"} 0
	// txoutbox_relay_failed_total{outcome="retried"} 0
	// txoutbox_relay_failed_total{outcome="topic_paused"} 0
	// txoutbox_relay_publish_lag_seconds_count 2
	// txoutbox_relay_published_total 2
}

// The stats collector reads the backlog when Prometheus scrapes /metrics.
func ExampleNewStatsCollector() {
	ctx := context.Background()
	store := memory.NewStore(memory.StoreConfig{})
	tx := store.Begin()
	_ = store.Enqueue(ctx, tx, outbox.Message{Topic: "a"}, outbox.Message{Topic: "b"}, outbox.Message{Topic: "c"})
	_ = tx.Commit()

	stats, err := outboxprom.NewStatsCollector(store, outboxprom.StatsConfig{})
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(stats)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer func() { _ = resp.Body.Close() }()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		for _, name := range []string{"txoutbox_pending_messages ", "txoutbox_dead_letters ", "txoutbox_stats_up "} {
			if strings.HasPrefix(lines.Text(), name) {
				fmt.Println(lines.Text())
			}
		}
	}
	// Output:
	// txoutbox_dead_letters 0
	// txoutbox_pending_messages 3
	// txoutbox_stats_up 1
}
