package kafkapub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ErrUnknownTopic matches the publish error of a message whose topic does
// not exist on the cluster (the error also matches
// kerr.UnknownTopicOrPartition and names the topic). It is an ordinary
// failure: the relay retries the message with backoff and dead-letters it
// after MaxAttempts, so a topic created in the meantime receives it. With a
// client from [Dial] a missing topic fails within about a second; see
// [DialConfig.ClientOptions].
var ErrUnknownTopic = errors.New("kafkapub: topic does not exist")

// ErrClosed matches the publish error of every message given to a
// [Publisher] after Close; that error also matches [outbox.ErrUnavailable].
var ErrClosed = errors.New("kafkapub: publisher is closed")

// notSent is the result of a message Publish did not hand to the client
// because its context ended first. It matches outbox.ErrNotAttempted, so
// the relay hands the message back without counting an attempt, and the
// cause.
type notSent struct{ cause error }

func (e notSent) Error() string        { return "kafkapub: not sent: " + e.cause.Error() }
func (e notSent) Unwrap() error        { return e.cause }
func (e notSent) Is(target error) bool { return target == outbox.ErrNotAttempted }

// heldBack is the result of a message not sent because an earlier message
// of its key failed in the same Publish call.
type heldBack struct{ id string }

func (e heldBack) Error() string {
	return fmt.Sprintf("%v (message %s of the key failed first)", outbox.ErrNotAttempted, e.id)
}
func (e heldBack) Is(target error) bool { return target == outbox.ErrNotAttempted }

// permanentKafka lists broker answers that retrying the same record cannot
// change: the record itself is refused.
var permanentKafka = []error{
	kerr.MessageTooLarge,       // larger than max.message.bytes (or the client's batch limit) alone; see aloneFor
	kerr.RecordListTooLarge,    // the same, from older brokers
	kerr.InvalidRecord,         // e.g. no key on a compacted topic
	kerr.InvalidTopicException, // a topic name Kafka can never accept
}

// unavailableKafka lists broker answers that no record can get past until
// an operator or the cluster fixes something: they are outages of the
// broker as far as the relay can tell, not failures of a message.
var unavailableKafka = []error{
	kerr.SaslAuthenticationFailed,
	kerr.IllegalSaslState,
	kerr.UnsupportedSaslMechanism,
	kerr.ClusterAuthorizationFailed, // no IDEMPOTENT_WRITE on the cluster
	kerr.NetworkException,           // the connection broke before the answer
	kerr.BrokerNotAvailable,
}

// refusedKafka lists broker answers that refuse the client's credentials
// or its permissions on the cluster: they match [outbox.ErrAccessDenied]
// as well as [outbox.ErrUnavailable] (no record gets through until someone
// fixes the credentials or the ACLs).
var refusedKafka = []error{
	kerr.SaslAuthenticationFailed,
	kerr.IllegalSaslState,
	kerr.UnsupportedSaslMechanism,
	kerr.ClusterAuthorizationFailed,
}

// classify turns the failure of a record produced to topic into the error
// Publish reports: [outbox.Permanent] for what retrying cannot fix,
// [outbox.ErrUnavailable] for a cluster that cannot be reached or does not
// answer in time (and also [outbox.ErrAccessDenied] when it refuses the
// credentials or the client's cluster permissions), [outbox.ErrAccessDenied]
// alone for a topic the client may not write to (an ordinary failure),
// [outbox.ErrTopicUnavailable] for a broker that answers
// but cannot take the topic's records now, [ErrUnknownTopic] for a missing
// topic, and a plain error otherwise. size is the record's key, value and
// header bytes.
//
// A record that kgo gave up on (kgo.ErrRecordTimeout) carries no broker
// answer: kgo retries NOT_ENOUGH_REPLICAS, NOT_LEADER_FOR_PARTITION and the
// like until the delivery timeout, then fails the record with the bare
// timeout, exactly as it does when no broker can be reached. Such a result
// counts as an outage here; Publish then pings the brokers and turns it
// into [outbox.ErrTopicUnavailable] when one answers (see [stalled]).
func classify(topic string, size int, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, outbox.ErrNotAttempted), errors.Is(err, outbox.ErrUnavailable),
		errors.Is(err, outbox.ErrTopicUnavailable), errors.Is(err, outbox.ErrPermanent):
		return err // ours already
	case anyIs(err, permanentKafka):
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			return outbox.Permanent(fmt.Errorf("kafkapub: topic %q refused a record of %d bytes (key, value and headers) as too large on its own: raise the topic's max.message.bytes (and the client's MaxMessageBytes) or send smaller messages: %w",
				topic, size, err))
		}
		return outbox.Permanent(fmt.Errorf("kafkapub: topic %q refused the record: %w", topic, err))
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return fmt.Errorf("%w: %q (create it; the publisher does not create topics): %w", ErrUnknownTopic, topic, err)
	case errors.Is(err, kerr.CorruptMessage):
		// Marked retriable by Kafka, but kgo does not retry it: the
		// broker refused this batch (a bad CRC, or a record it cannot
		// accept), so it counts against the message.
		return fmt.Errorf("kafkapub: topic %q refused the batch of the record: %w", topic, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("kafkapub: not allowed to write to topic %q (grant WRITE on it): %w: %w", topic, outbox.ErrAccessDenied, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: kafkapub: topic %q: no acknowledgement before the deadline: %w", outbox.ErrUnavailable, topic, err)
	case errors.Is(err, context.Canceled):
		// kgo fails a record on a cancelled context only while it is
		// safe, that is before it was written to a broker.
		return notSent{fmt.Errorf("topic %q: %w", topic, err)}
	case anyIs(err, refusedKafka):
		return fmt.Errorf("%w: %w: kafkapub: topic %q: the brokers refuse the client's credentials or cluster permissions: %w",
			outbox.ErrUnavailable, outbox.ErrAccessDenied, topic, err)
	case unreachable(err):
		return fmt.Errorf("%w: kafkapub: topic %q: %w", outbox.ErrUnavailable, topic, err)
	case topicRefused(err):
		return fmt.Errorf("%w: kafkapub: topic %q cannot take records now (the broker answers; it retries): %w", outbox.ErrTopicUnavailable, topic, err)
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries):
		return &stalled{topic: topic, err: err}
	}
	return fmt.Errorf("kafkapub: topic %q: %w", topic, err)
}

// topicRefused reports whether err holds a broker's answer that a
// partition of the topic cannot take records now but may soon: fewer
// in-sync replicas than min.insync.replicas (NOT_ENOUGH_REPLICAS, also
// after the append), no leader or a moved one (LEADER_NOT_AVAILABLE,
// NOT_LEADER_OR_FOLLOWER, stale leader epochs), replicas too slow
// (REQUEST_TIMED_OUT), an offline log directory (KAFKA_STORAGE_ERROR): any
// error Kafka marks retriable, since a broker sent it. kgo reports these on
// a record when its retries are limited (kgo.RecordRetries), or wrapped in
// kgo.ErrRecordTimeout when a new topic's metadata kept failing. A missing
// topic and the connection errors are sorted out before.
func topicRefused(err error) bool {
	ke, ok := errors.AsType[*kerr.Error](err)
	return ok && ke.Retriable
}

// stalled is the result of a record the client gave up on without a broker
// answer to tell why (kgo.ErrRecordTimeout, kgo.ErrRecordRetries). It
// matches [outbox.ErrUnavailable] until Publish has pinged the brokers:
// when one answers, the cluster is up and the trouble lies with the
// record's partitions (too few in-sync replicas, no leader), so it matches
// [outbox.ErrTopicUnavailable] instead; when none answers, the ping's error
// says why (refused credentials, for one, which kgo does not put on the
// records).
type stalled struct {
	topic     string
	err       error
	reachable bool  // a broker answered the ping
	pingErr   error // why no broker answered it, if pinged
}

func (e *stalled) Error() string {
	switch {
	case e.reachable:
		return fmt.Sprintf("%v: kafkapub: topic %q took no record in time although the brokers answer (are its partitions short of in-sync replicas, see min.insync.replicas, or without a leader?): %v",
			outbox.ErrTopicUnavailable, e.topic, e.err)
	case e.pingErr != nil:
		return fmt.Sprintf("%v: kafkapub: topic %q: %v (a ping of the brokers fails with: %v)", outbox.ErrUnavailable, e.topic, e.err, e.pingErr)
	}
	return fmt.Sprintf("%v: kafkapub: topic %q: %v", outbox.ErrUnavailable, e.topic, e.err)
}

func (e *stalled) Unwrap() error { return e.err }

func (e *stalled) Is(target error) bool {
	if e.reachable {
		return target == outbox.ErrTopicUnavailable
	}
	return target == outbox.ErrUnavailable || (target == outbox.ErrAccessDenied && refused(e.pingErr))
}

// refused reports whether err holds a broker's refusal of the client's
// credentials or cluster permissions.
func refused(err error) bool {
	return err != nil && (errors.Is(err, outbox.ErrAccessDenied) || anyIs(err, refusedKafka))
}

// unreachable reports whether err means that the cluster cannot take any
// record now: no connection, refused credentials or TLS, a closed client,
// or a broker that broke the connection.
func unreachable(err error) bool {
	if anyIs(err, unavailableKafka) || anyIs(err, []error{
		kgo.ErrClientClosed, kgo.ErrMaxBuffered, kgo.ErrAborting,
		ErrClosed, io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, syscall.ECONNREFUSED, syscall.ECONNRESET,
	}) {
		return true
	}
	if kgo.IsRetryableBrokerErr(err) {
		return true
	}
	if _, ok := errors.AsType[*kgo.ErrFirstReadEOF](err); ok {
		return true // TLS or SASL mismatch with the broker
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return true
	}
	return false
}

func anyIs(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
