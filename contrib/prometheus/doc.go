// Package outboxprom exposes a txoutbox relay and its outbox as Prometheus
// metrics.
//
// Two collectors, both registered like any other [prometheus.Collector]:
//
//   - [Observer] is an [outbox.Observer]: set it as
//     [outbox.RelayConfig.Observer] and it counts reads, published
//     messages and failures by outcome, times reads, publish calls and the
//     commit-to-publish lag of every message, and follows the relay's
//     lanes: held, taken, lost and given back, and the live relays.
//   - [StatsCollector] asks a store that is an [outbox.StatsReader] for
//     its backlog when Prometheus scrapes: pending, retrying, replayed and
//     dead messages, the age of the oldest pending one, the lane count, the
//     lanes each live relay holds, and the backlog of the lanes that lag
//     most.
//
// Wiring, in a service that runs its relay in process or in the outbox
// command:
//
//	obs, err := outboxprom.NewObserver(outboxprom.ObserverConfig{})
//	stats, err := outboxprom.NewStatsCollector(store, outboxprom.StatsConfig{})
//	prometheus.MustRegister(obs, stats)
//	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{Observer: obs})
//	http.Handle("/metrics", promhttp.Handler())
//
// Every metric name starts with txoutbox_. Labels are kept few: no relay
// owner (it changes at every restart; Prometheus's instance label already
// tells processes apart) and no topic unless [ObserverConfig.TopicLabel]
// asks for one. The README of this module lists every metric.
package outboxprom
