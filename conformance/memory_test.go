package conformance_test

import (
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
)

// The in-memory reference store and broker are the executable
// specification: they pass every suite.

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	conformance.RunStoreSuite(t, conformance.MemoryOutbox())
}

func TestMemoryPublisher(t *testing.T) {
	t.Parallel()
	conformance.RunPublisherSuite(t, conformance.MemoryBroker())
}

func TestMemoryRelay(t *testing.T) {
	t.Parallel()
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  conformance.MemoryOutbox(),
		Broker: conformance.MemoryBroker(),
	})
}
