package mongostore

import (
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Server error codes the store looks at.
const (
	codeUnauthorized            = 13 // the user lacks a privilege
	codeAuthenticationFailed    = 18
	codeHostUnreachable         = 6
	codeHostNotFound            = 7
	codeNamespaceNotFound       = 26
	codeNamespaceExists         = 48
	codeNetworkTimeout          = 89
	codeShutdownInProgress      = 91
	codeCommandNotSupported     = 115
	codeNotWritablePrimary      = 10107
	codePrimarySteppedDown      = 189
	codeNotImplemented          = 238 // FerretDB: a feature it lacks
	codeChangeStreamHistory     = 286 // ChangeStreamHistoryLost
	codeChangeStreamFatal       = 280
	codeInterruptedAtShutdown   = 11600
	codeInterruptedDueToRepl    = 11602
	codeNotPrimaryNoSecondaryOK = 13435
	codeNotPrimaryOrSecondary   = 13436
	codeSocketException         = 9001
	codeReplicaSetsOnly         = 40573 // "The $changeStream stage is only supported on replica sets"
)

// fail wraps a driver error from operation op, adding the core sentinel
// that fits: [outbox.ErrAccessDenied] when the server refuses the
// credentials (when the connection is made) or a privilege,
// [outbox.ErrUnavailable] when the server cannot be reached or is not
// primary right now. The driver error stays in the chain, so context
// errors still match errors.Is, its labels (TransientTransactionError) and
// codes remain visible to errors.As, and session.WithTransaction still
// retries what it should. A database that does not exist is no error in
// MongoDB: it appears with its first collection.
func fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if accessDenied(err) {
		return fmt.Errorf("mongostore: %s: %w: %w", op, outbox.ErrAccessDenied, err)
	}
	if unavailable(err) {
		return fmt.Errorf("mongostore: %s: %w: %w", op, outbox.ErrUnavailable, err)
	}
	return fmt.Errorf("mongostore: %s: %w", op, err)
}

// accessDenied reports whether err is a refused authentication (the
// driver reports it as a failed connection handshake) or a command the
// user has no privilege for.
func accessDenied(err error) bool {
	if _, ok := errors.AsType[*auth.Error](err); ok {
		return true
	}
	return hasCode(err, codeAuthenticationFailed, codeUnauthorized)
}

// unavailable reports whether err means the deployment cannot serve the
// request right now: a network error, no server to select, or a primary
// that is stepping down or shutting down.
func unavailable(err error) bool {
	if mongo.IsNetworkError(err) || errors.Is(err, mongo.ErrClientDisconnected) {
		return true
	}
	var sel topology.ServerSelectionError
	if errors.As(err, &sel) {
		return true
	}
	var conn topology.ConnectionError
	if errors.As(err, &conn) {
		return true
	}
	if pe, ok := errors.AsType[interface {
		error
		driver.RetryablePoolError
	}](err); ok && pe.Retryable() {
		return true // the pool was cleared after another operation's connection failed
	}
	return hasCode(err, codeHostUnreachable, codeHostNotFound, codeNetworkTimeout, codeShutdownInProgress,
		codeNotWritablePrimary, codePrimarySteppedDown, codeInterruptedAtShutdown, codeInterruptedDueToRepl,
		codeNotPrimaryNoSecondaryOK, codeNotPrimaryOrSecondary, codeSocketException)
}

// hasCode reports whether err is a server error with one of codes.
func hasCode(err error, codes ...int) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}
