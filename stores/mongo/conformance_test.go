package mongostore_test

import (
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
)

func TestStoreSuite(t *testing.T) {
	conformance.RunStoreSuite(t, storeHarness(t))
}

func TestRelaySuite(t *testing.T) {
	conformance.RunRelaySuite(t, conformance.RelayHarness{Store: relayHarness(t), Broker: conformance.MemoryBroker()})
}
