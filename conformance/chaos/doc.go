// Package chaos proves txoutbox's promises under faults, for any store ×
// broker pair: relays killed at random moments (one, two or three relays
// sharing an outbox), relays joining and leaving while their lanes change
// hands, a zombie relay frozen past its lease that wakes up, a broker
// outage, database connections killed, writers that panic, cancel or roll
// back, a poison message, a transaction that commits late, and writers of
// one key that commit in the reverse order of their sequence numbers. Every scenario is checked with a [conformance.Ledger]:
// nothing lost, per-key order kept, nothing rolled back ever delivered, and
// duplicates — all carrying their original ID — bounded by the kills.
//
// A pair is described by a [Target]: the outbox (for writers), the broker
// (for the consumer), how to start a relay — normally a separate process
// that the runner SIGKILLs — and the faults the pair can inject. [Run]
// executes every scenario against it and returns one [Result] per scenario;
// [Table] formats them.
package chaos
