package outboxprom

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	outbox "github.com/txoutbox/txoutbox/core"
)

// namespace prefixes every metric name.
const namespace = "txoutbox"

// Bucket defaults, in seconds.
var (
	// DefaultDurationBuckets time reads and publish calls: 1 ms to 30 s,
	// beyond the relay's default publish timeout of 15 s.
	DefaultDurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	// DefaultLagBuckets measure the commit-to-publish lag: 5 ms (a relay
	// woken by a notification) to 1 h (a backlog after a broker outage,
	// or retries backing off up to the default 5 min).
	DefaultLagBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
)

// checkConstLabels rejects constant labels that are invalid or that clash
// with a label of the package's own.
func checkConstLabels(what string, labels prometheus.Labels, reserved ...string) error {
	for name := range labels {
		if !isLabelName(name) {
			return fmt.Errorf("%w: %s.ConstLabels: %q is not a valid label name", outbox.ErrInvalidConfig, what, name)
		}
		if slices.Contains(reserved, name) {
			return fmt.Errorf("%w: %s.ConstLabels: %q is a label of the package's own metrics; choose another name", outbox.ErrInvalidConfig, what, name)
		}
	}
	return nil
}

// checkBuckets rejects bucket lists that are not strictly increasing.
func checkBuckets(field string, buckets []float64) error {
	for i := 1; i < len(buckets); i++ {
		if !(buckets[i-1] < buckets[i]) {
			return fmt.Errorf("%w: ObserverConfig.%s must be strictly increasing; %v follows %v", outbox.ErrInvalidConfig, field, buckets[i], buckets[i-1])
		}
	}
	return nil
}

// isLabelName reports whether name is a label name that every Prometheus
// version accepts: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved).
func isLabelName(name string) bool {
	if name == "" || strings.HasPrefix(name, "__") {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
