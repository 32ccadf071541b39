package conformance

import "github.com/txoutbox/txoutbox/conformance/ledger"

// Ledger checks a run end to end; see package ledger.
type Ledger = ledger.Ledger

// Report is the verdict of a [Ledger].
type Report = ledger.Report

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return ledger.New() }
