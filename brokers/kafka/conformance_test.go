package kafkapub_test

import (
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
)

func TestPublisherSuiteFake(t *testing.T) {
	t.Run("Dial", func(t *testing.T) { conformance.RunPublisherSuite(t, harness(fakeBrokers, dialed)) })
	t.Run("New", func(t *testing.T) { conformance.RunPublisherSuite(t, harness(fakeBrokers, overOwnClient)) })
}

func TestRelaySuiteFake(t *testing.T) {
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  conformance.MemoryOutbox(),
		Broker: harness(fakeBrokers, dialed),
	})
}

// realBrokers is the real cluster of kafkaserver.Brokers: the one in
// OUTBOX_TEST_KAFKA_BROKERS, or a KRaft container. The test skips without
// one, unless OUTBOX_TEST_REQUIRE names kafka.
func realBrokers(t *testing.T) []string { return kafkaserver.Brokers(t) }

func TestPublisherSuiteKafka(t *testing.T) {
	realBrokers(t) // skip at once without a cluster
	conformance.RunPublisherSuite(t, harness(realBrokers, dialed))
}

func TestRelaySuiteKafka(t *testing.T) {
	realBrokers(t)
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  conformance.MemoryOutbox(),
		Broker: harness(realBrokers, dialed),
	})
}
