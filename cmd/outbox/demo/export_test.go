package demo

import "github.com/txoutbox/txoutbox/conformance/ledger"

// SetReceiveHook makes the demo's consumer drop the messages for which f
// returns false, until the returned function is called. Tests that use it
// must not run in parallel.
func SetReceiveHook(f func(ledger.Received) bool) (restore func()) {
	receiveHook = f
	return func() { receiveHook = nil }
}
