package natspub

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ErrNoStream matches the publish error of a message whose subject no
// JetStream stream captures. The error names the subject. Create a stream
// whose subjects include it, or set [Config.CreateStreams]
// (create_streams=true in a [ParseURL] URL, as `outbox relay --broker`
// takes it); the error says both. The relay
// retries such a message with backoff and dead-letters it after
// MaxAttempts, so a stream created in the meantime receives it.
var ErrNoStream = errors.New("natspub: no JetStream stream captures the subject")

// errAckTimeout is the error of a message whose acknowledgement did not
// arrive within Config.AckTimeout.
var errAckTimeout = errors.New("no acknowledgement within AckTimeout")

// errPending marks a result not yet known; Publish never returns it.
var errPending = errors.New("natspub: result pending")

// notSent is the result of a message Publish did not send because its
// context ended first. It matches outbox.ErrNotAttempted, so the relay
// hands the message back without counting an attempt, and the cause.
type notSent struct{ cause error }

func (e notSent) Error() string        { return "natspub: not sent: " + e.cause.Error() }
func (e notSent) Unwrap() error        { return e.cause }
func (e notSent) Is(target error) bool { return target == outbox.ErrNotAttempted }

// connectivity lists the client errors that mean the server cannot be
// reached, not that this message is wrong.
var connectivity = []error{
	nats.ErrConnectionClosed,
	nats.ErrConnectionDraining,
	nats.ErrConnectionReconnecting,
	nats.ErrDisconnected,
	nats.ErrNoServers,
	nats.ErrReconnectBufExceeded,
	nats.ErrStaleConnection,
	nats.ErrInvalidConnection,
	jetstream.ErrConnectionClosed,
	jetstream.ErrJetStreamPublisherClosed,
	jetstream.ErrTooManyStalledMsgs,
	jetstream.ErrJetStreamNotEnabled,
	jetstream.ErrJetStreamNotEnabledForAccount,
}

// refused reports whether err is the server's refusal of the connection's
// credentials.
func refused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// unavailable reports why the connection cannot publish now, as an error
// matching outbox.ErrUnavailable (and outbox.ErrAccessDenied when the
// server refused the credentials), or nil when it is connected.
func (p *Publisher) unavailable() error {
	if p.closed.Load() {
		return fmt.Errorf("%w: the publisher is closed", outbox.ErrUnavailable)
	}
	st := p.nc.Status()
	if st == nats.CONNECTED {
		return nil
	}
	if last := p.nc.LastError(); last != nil {
		if refused(last) {
			return fmt.Errorf("%w: %w: the NATS connection is %s: the server refuses the credentials: %w", outbox.ErrUnavailable, outbox.ErrAccessDenied, st, last)
		}
		return fmt.Errorf("%w: the NATS connection is %s (last error: %w)", outbox.ErrUnavailable, st, last)
	}
	return fmt.Errorf("%w: the NATS connection is %s", outbox.ErrUnavailable, st)
}

// classify turns the failure of the message on subject into the error
// Publish reports: Permanent for what retrying cannot fix, ErrUnavailable
// for a server that cannot be reached, a plain error otherwise. It does not
// handle "no stream": see batch.noStream.
func (p *Publisher) classify(subject string, err error) error {
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return outbox.Permanent(fmt.Errorf("natspub: message on %q is larger than the server's max_payload of %d bytes (payload and headers together): %w",
			subject, p.nc.MaxPayload(), err))
	case errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return outbox.Permanent(fmt.Errorf("natspub: message on %q is larger than its stream's max_msg_size: %w", subject, err))
	case errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrHeadersNotSupported):
		return outbox.Permanent(fmt.Errorf("natspub: publish on %q: %w", subject, err))
	case errors.Is(err, nats.ErrPermissionViolation):
		return fmt.Errorf("natspub: not allowed to publish on %q (grant the user publish permission on it): %w: %w", subject, outbox.ErrAccessDenied, err)
	}
	for _, target := range connectivity {
		if errors.Is(err, target) {
			return fmt.Errorf("natspub: publish on %q: %w: %w", subject, outbox.ErrUnavailable, err)
		}
	}
	timeout := errors.Is(err, errAckTimeout) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	if timeout {
		// A server that went away shows as a silent ack; a connected server
		// that does not answer is a problem of this message's stream.
		if down := p.unavailable(); down != nil {
			return fmt.Errorf("natspub: no acknowledgement for the message on %q: %w", subject, down)
		}
		return fmt.Errorf("natspub: no acknowledgement for the message on %q (it may have been stored; a retry with the same Nats-Msg-Id is dropped as a duplicate): %w", subject, err)
	}
	return fmt.Errorf("natspub: publish on %q: %w", subject, err)
}

// isNoResponse reports whether err says that nothing answered a publish:
// no stream captures the subject, or its stream has no leader right now.
func isNoResponse(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

func noStreamError(subject string) error {
	return fmt.Errorf("%w %q: create a stream whose subjects include it, or let the publisher create one: add create_streams=true to the broker URL (Config.CreateStreams in Go)", ErrNoStream, subject)
}
