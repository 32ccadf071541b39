package natspub

import (
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
)

func TestPublisherSuite(t *testing.T) {
	conformance.RunPublisherSuite(t, harness())
}

func TestRelaySuite(t *testing.T) {
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  conformance.MemoryOutbox(),
		Broker: harness(),
	})
}
