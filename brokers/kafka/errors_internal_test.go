package kafkapub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
)

// TestClassify: every kind of produce failure maps to the error the relay
// needs, and keeps the client's error and the topic in the text.
func TestClassify(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	tests := []struct {
		err  error
		want error // nil: a plain error, neither permanent nor unavailable nor not attempted
	}{
		{kerr.MessageTooLarge, outbox.ErrPermanent},
		{fmt.Errorf("%w (uncompressed_bytes=9)", kerr.MessageTooLarge), outbox.ErrPermanent},
		{kerr.RecordListTooLarge, outbox.ErrPermanent},
		{kerr.InvalidRecord, outbox.ErrPermanent},
		{kerr.InvalidTopicException, outbox.ErrPermanent},
		{kerr.UnknownTopicOrPartition, ErrUnknownTopic},
		{kerr.UnknownTopicID, ErrUnknownTopic},
		{kerr.TopicAuthorizationFailed, nil},
		{kerr.UnknownServerError, nil},
		{kerr.CorruptMessage, nil},
		{errors.New("something else"), nil},
		{kerr.NotEnoughReplicas, outbox.ErrTopicUnavailable},
		{kerr.NotEnoughReplicasAfterAppend, outbox.ErrTopicUnavailable},
		{kerr.NotLeaderForPartition, outbox.ErrTopicUnavailable},
		{kerr.LeaderNotAvailable, outbox.ErrTopicUnavailable},
		{kerr.RequestTimedOut, outbox.ErrTopicUnavailable},
		{kerr.KafkaStorageError, outbox.ErrTopicUnavailable},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.LeaderNotAvailable), outbox.ErrTopicUnavailable},
		{kerr.NetworkException, outbox.ErrUnavailable},
		{kerr.SaslAuthenticationFailed, outbox.ErrUnavailable},
		{kerr.ClusterAuthorizationFailed, outbox.ErrUnavailable},
		{kgo.ErrRecordTimeout, outbox.ErrUnavailable},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, dial), outbox.ErrUnavailable},
		{kgo.ErrRecordRetries, outbox.ErrUnavailable},
		{kgo.ErrClientClosed, outbox.ErrUnavailable},
		{kgo.ErrMaxBuffered, outbox.ErrUnavailable},
		{dial, outbox.ErrUnavailable},
		{syscall.ECONNREFUSED, outbox.ErrUnavailable},
		{io.EOF, outbox.ErrUnavailable},
		{context.DeadlineExceeded, outbox.ErrUnavailable},
		{context.Canceled, outbox.ErrNotAttempted},
	}
	denied := []error{kerr.SaslAuthenticationFailed, kerr.ClusterAuthorizationFailed, kerr.TopicAuthorizationFailed}
	for _, tc := range tests {
		got := classify("orders", 100, tc.err)
		if want := anyIs(tc.err, denied); errors.Is(got, outbox.ErrAccessDenied) != want {
			t.Errorf("classify(%v) = %v; errors.Is(ErrAccessDenied) = %v, want %v", tc.err, got, !want, want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("classify(%v) = %v, which lost the cause", tc.err, got)
		}
		if !strings.Contains(got.Error(), `"orders"`) {
			t.Errorf("classify(%v) = %v, which does not name the topic", tc.err, got)
		}
		kinds := []error{outbox.ErrPermanent, outbox.ErrUnavailable, outbox.ErrTopicUnavailable, outbox.ErrNotAttempted, ErrUnknownTopic}
		for _, k := range kinds {
			if is := errors.Is(got, k); is != (k == tc.want) {
				t.Errorf("classify(%v) = %v; errors.Is(%v) = %v", tc.err, got, k, is)
			}
		}
	}
	if classify("orders", 0, nil) != nil {
		t.Error("classify(nil) is not nil")
	}
}

// TestStalledRecord: a record the client gave up on is an outage until a
// ping of the brokers says the cluster answers; then it is the topic's.
func TestStalledRecord(t *testing.T) {
	t.Parallel()
	err := classify("orders", 100, kgo.ErrRecordTimeout)
	st, ok := errors.AsType[*stalled](err)
	if !ok {
		t.Fatalf("classify(ErrRecordTimeout) = %T %v; want a *stalled", err, err)
	}
	st.pingErr = errors.New("dial tcp 127.0.0.1:9092: connection refused")
	if !errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, outbox.ErrTopicUnavailable) || errors.Is(err, outbox.ErrAccessDenied) ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Errorf("stalled with a failed ping = %v; want ErrUnavailable (only) with the ping's reason", err)
	}
	st.pingErr = fmt.Errorf("kafkapub: ping: %w", kerr.SaslAuthenticationFailed)
	if !errors.Is(err, outbox.ErrUnavailable) || !errors.Is(err, outbox.ErrAccessDenied) || !strings.Contains(err.Error(), "SASL") {
		t.Errorf("stalled with a ping refused by SASL = %v; want ErrUnavailable and ErrAccessDenied with the ping's reason", err)
	}
	st.reachable, st.pingErr = true, nil
	if errors.Is(err, outbox.ErrUnavailable) || !errors.Is(err, outbox.ErrTopicUnavailable) || !errors.Is(err, kgo.ErrRecordTimeout) ||
		!strings.Contains(err.Error(), `"orders"`) || !strings.Contains(err.Error(), "min.insync.replicas") {
		t.Errorf("stalled with the brokers answering = %v; want ErrTopicUnavailable naming the topic and the likely cause", err)
	}
}
