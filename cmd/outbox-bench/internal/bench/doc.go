// Package bench is the outbox-bench command (cmd/outbox-bench): it measures
// txoutbox on real stores and brokers, and in the same run the ceilings and
// the baseline those figures are read against. It is a developer's tool, a
// module of its own so that the operator's outbox command does not link it.
// It reads and shows URLs as the outbox command does (its backend package:
// MySQLConfig, Redact); its stores and brokers are fixtures of its own that
// the commands have no use for: an outbox per measurement in a schema,
// table, topic or stream made for it and dropped after, sized connection
// pools, raw tables and producers for the ceilings, the simple relay's SQL.
//
// For each store it measures the enqueue overhead (a business transaction
// alone, then with 1 and 10 outbox messages, from 8 concurrent writers),
// the store's raw batched insert rate, and the cost of a read and of the
// settle of what it read with 0 and with many retained delivered records. For each
// broker it measures the broker's own asynchronous producer. For each store
// × broker pair it measures the drain of a pre-filled backlog by 1, 2 and 4
// relays, the commit → broker-ack latency at steady rates, and the same two
// for a deliberately simple relay (one loop: SELECT … FOR UPDATE SKIP LOCKED
// LIMIT 500, publish and wait for the acks, mark delivered, commit), the
// baseline every txoutbox figure is compared with.
//
// [Main] is the command. [Run] returns a [Report]; [Report.WriteText]
// prints the terminal tables, the JSON form is the Report itself,
// [WriteCharts] draws the SVG charts and [UpdateDoc] rewrites the generated
// part of docs/benchmarks.md. Nothing in here asserts on time: a benchmark
// measures, people judge.
package bench
