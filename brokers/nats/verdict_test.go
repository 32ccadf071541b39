package natspub

import (
	"errors"
	"strings"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

// TestUnansweredStreamHoldsItsSubjectOnly: a stream that exists but does
// not answer while the connection is up (no leader) is the subject's
// trouble, not an outage: the relay must hold back that subject alone.
func TestUnansweredStreamHoldsItsSubjectOnly(t *testing.T) {
	t.Parallel()
	err := (&batch{}).noStreamVerdict("orders.created")
	if !errors.Is(err, outbox.ErrTopicUnavailable) || errors.Is(err, outbox.ErrUnavailable) || !strings.Contains(err.Error(), `"orders.created"`) {
		t.Fatalf("verdict = %v; want ErrTopicUnavailable (not ErrUnavailable) naming the subject", err)
	}
}
