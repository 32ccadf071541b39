package mysqlstore

import (
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
)

func TestStoreSuite(t *testing.T) {
	conformance.RunStoreSuite(t, storeHarness(nil))
}

func TestRelaySuite(t *testing.T) {
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  storeHarness(nil),
		Broker: conformance.MemoryBroker(),
	})
}

// The suites again with a claim window of the limit plus one record, so
// that most claims also look past their window (claimBeyond), which the
// default window reaches only with long backlogs of few keys.
func TestStoreSuiteNarrowWindow(t *testing.T) {
	slack := 1
	conformance.RunStoreSuite(t, storeHarness(&slack))
}

func TestRelaySuiteNarrowWindow(t *testing.T) {
	slack := 1
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  storeHarness(&slack),
		Broker: conformance.MemoryBroker(),
	})
}
