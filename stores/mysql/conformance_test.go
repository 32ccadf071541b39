package mysqlstore

import (
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
)

func TestStoreSuite(t *testing.T) {
	conformance.RunStoreSuite(t, storeHarness())
}

func TestRelaySuite(t *testing.T) {
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  storeHarness(),
		Broker: conformance.MemoryBroker(),
	})
}
