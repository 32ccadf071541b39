package conformance

import (
	"testing"
)

// storeTest is one test of the store suite.
type storeTest struct {
	name string
	run  func(t *testing.T, h StoreHarness)
}

// RunStoreSuite proves that a store keeps the promises of [outbox.Store]:
// atomic Enqueue, exclusive lane leases, outcomes fenced by lane epochs,
// reads in Seq order that see late commits, retries, dead letters, and the
// optional capabilities it implements. Every test gets its own outbox from
// h.New and runs in parallel with the others.
func RunStoreSuite(t *testing.T, h StoreHarness) {
	if h.New == nil {
		t.Fatal("conformance: StoreHarness.New is nil")
	}
	groups := []struct {
		name  string
		tests []storeTest
	}{
		{"Atomicity", atomicityTests},
		{"Enqueue", enqueueTests},
		{"Lanes", laneTests},
		{"Order", orderTests},
		{"DeadLetters", deadLetterTests},
		{"Capabilities", capabilityTests},
		{"Inspect", inspectTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, h)
				})
			}
		})
	}
}
