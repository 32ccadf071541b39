// Package conformance holds the suites that every txoutbox adapter runs
// from its own tests, against a real server, to prove the promises of
// package outbox (module github.com/txoutbox/txoutbox/core):
//
//   - [RunStoreSuite]: atomicity of Enqueue, lane leases and their
//     epochs (exclusive takes, renewals, fenced settles, takeover
//     charges), reads in Seq order that see late commits, retries, dead
//     letters, cleanup and stats.
//   - [RunPublisherSuite]: delivery with key, headers and ID; per-message
//     results; per-key order when a message fails; refusals that are
//     errors, not silence.
//   - [RunRelaySuite]: concurrent writers and relays end to end, checked
//     with a [Ledger]: nothing lost, per-key order kept, rolled-back
//     messages never delivered, duplicates counted.
//
// A store adapter calls the store and relay suites with a [StoreHarness]
// and the in-memory broker ([MemoryBroker]); a broker adapter calls the
// publisher and relay suites with a [PublisherHarness] and the in-memory
// outbox ([MemoryOutbox]):
//
//	func TestConformance(t *testing.T) {
//		h := conformance.StoreHarness{New: newOutbox}
//		conformance.RunStoreSuite(t, h)
//		conformance.RunRelaySuite(t, conformance.RelayHarness{Store: h, Broker: conformance.MemoryBroker()})
//	}
//
// Features a backend genuinely lacks are declared in the harness with the
// reason, and the tests that need them skip with that reason. The packages
// under servers find real servers for the tests (environment URL, local
// binaries, or Docker).
package conformance
