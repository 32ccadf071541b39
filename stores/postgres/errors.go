package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	outbox "github.com/txoutbox/txoutbox/core"
)

// SQLSTATE codes the store translates.
const (
	codeUndefinedTable  = "42P01"
	codeInvalidSchema   = "3F000"
	codeUnknownDatabase = "3D000" // invalid_catalog_name: the database in the connection settings
	codeNoPrivilege     = "42501" // insufficient_privilege
	classAuthorization  = "28"    // invalid_authorization_specification (unknown role), invalid_password
	codeUniqueViolation = "23505"
	codeAdminShutdown   = "57P01" // pg_terminate_backend, fast shutdown
	codeCrashShutdown   = "57P02"
	codeCannotConnect   = "57P03" // starting up, shutting down, in recovery
	codeTooManyConns    = "53300"
	classConnection     = "08"
)

// translate wraps a driver error of operation op, adding the core sentinel
// that fits: [outbox.ErrSchemaMissing] when the outbox table or its schema
// does not exist, [outbox.ErrDatabaseMissing] when the database of the
// connection settings does not, [outbox.ErrAccessDenied] when the server
// refuses the role, its password or a privilege, [outbox.ErrUnavailable]
// when the server cannot be reached or dropped the connection. errors.As
// still finds the *pgconn.PgError.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if sentinel := classify(err); sentinel != nil {
		return fmt.Errorf("pgstore: %s: %w: %w", op, sentinel, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil // the caller's decision, not the server's state
	}
	if code, ok := sqlState(err); ok {
		switch {
		case code == codeUndefinedTable, code == codeInvalidSchema:
			return outbox.ErrSchemaMissing
		case code == codeUnknownDatabase:
			return outbox.ErrDatabaseMissing
		case strings.HasPrefix(code, classAuthorization), code == codeNoPrivilege:
			return outbox.ErrAccessDenied
		case strings.HasPrefix(code, classConnection),
			code == codeAdminShutdown, code == codeCrashShutdown,
			code == codeCannotConnect, code == codeTooManyConns:
			return outbox.ErrUnavailable
		}
		return nil
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, pgconn.ErrConnClosed):
		return outbox.ErrUnavailable
	}
	return nil
}

// sqlState returns the SQLSTATE of a server error: pgx's *pgconn.PgError,
// or the error of another driver with a SQLState method (lib/pq's *pq.Error,
// behind EnqueueSQL).
func sqlState(err error) (string, bool) {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return coded.SQLState(), true
	}
	return "", false
}

// isUniqueViolation reports whether err is a unique_violation.
func isUniqueViolation(err error) bool {
	code, ok := sqlState(err)
	return ok && code == codeUniqueViolation
}
