package mysqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Server error numbers the store treats specially.
const (
	erLockWaitTimeout   = 1205
	erLockDeadlock      = 1213
	erNoSuchTable       = 1146
	erBadDB             = 1049 // unknown database
	erDBAccessDenied    = 1044 // the user may not use the database
	erAccessDenied      = 1045 // unknown user or wrong password
	erTableAccessDenied = 1142 // a command refused on a table
	erColumnAccess      = 1143
	erSpecificAccess    = 1227 // needs a privilege such as SUPER
	erAccessNoPassword  = 1698 // MariaDB/MySQL: unknown user, or a plugin refused it
	erDupEntry          = 1062
	erConCount          = 1040 // too many connections
	erServerShutdown    = 1053
	erAbortingConn      = 1152
	erNetReadInterrupt  = 1159
	erNetErrorOnWrite   = 1160
	erNetWriteInterrupt = 1161
	erQueryInterrupted  = 1317 // KILL QUERY
	erReadOnly          = 1290 // --read-only, as during a failover
	erReadOnlyMode      = 1836
	erConnectionKilled  = 1927 // MariaDB: KILL CONNECTION
	erClientIdle        = 4031 // MySQL: disconnected for inactivity
)

// translate wraps a driver error of operation op: connection failures match
// [outbox.ErrUnavailable], a missing table [outbox.ErrSchemaMissing], an
// unknown database [outbox.ErrDatabaseMissing], refused credentials or
// privileges [outbox.ErrAccessDenied]; the driver's error stays in the
// chain.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("mysqlstore: %s: %w", op, err)
	case isSchemaMissing(err):
		return fmt.Errorf("mysqlstore: %s: %w: %w", op, outbox.ErrSchemaMissing, err)
	case isServerError(err, erBadDB):
		return fmt.Errorf("mysqlstore: %s: %w: %w", op, outbox.ErrDatabaseMissing, err)
	case isServerError(err, erAccessDenied, erAccessNoPassword, erDBAccessDenied, erTableAccessDenied, erColumnAccess, erSpecificAccess):
		return fmt.Errorf("mysqlstore: %s: %w: %w", op, outbox.ErrAccessDenied, err)
	case isUnavailable(err):
		return fmt.Errorf("mysqlstore: %s: %w: %w", op, outbox.ErrUnavailable, err)
	}
	return fmt.Errorf("mysqlstore: %s: %w", op, err)
}

func serverError(err error) (uint16, bool) {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number, true
	}
	return 0, false
}

// isServerError reports whether err is a server error with one of numbers.
func isServerError(err error, numbers ...uint16) bool {
	n, ok := serverError(err)
	return ok && slices.Contains(numbers, n)
}

func isSchemaMissing(err error) bool {
	n, ok := serverError(err)
	return ok && n == erNoSuchTable
}

// isUnavailable reports whether err says the server could not be reached
// or dropped the connection.
func isUnavailable(err error) bool {
	if n, ok := serverError(err); ok {
		switch n {
		case erConCount, erServerShutdown, erAbortingConn, erNetReadInterrupt, erNetErrorOnWrite,
			erNetWriteInterrupt, erQueryInterrupted, erReadOnly, erReadOnlyMode, erConnectionKilled, erClientIdle:
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &netErr)
}

// isLockConflict reports whether err is a deadlock or a lock wait timeout:
// InnoDB gave up on the statement (or the whole transaction) because of
// another transaction, and trying again is the cure.
func isLockConflict(err error) bool {
	n, ok := serverError(err)
	return ok && (n == erLockDeadlock || n == erLockWaitTimeout)
}

// lockRetries is how many times an operation runs before a lock conflict
// is reported to the caller.
const lockRetries = 5

// withRetry runs fn, again after a short pause when it fails with a lock
// conflict, and translates the error that remains.
func (s *Store) withRetry(ctx context.Context, op string, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if !isLockConflict(err) || attempt == lockRetries {
			if isLockConflict(err) {
				err = fmt.Errorf("gave up after %d lock conflicts: %w", attempt, err)
			}
			return translate(op, err)
		}
		if s.onLockConflict != nil {
			s.onLockConflict(op, err)
		}
		pause := time.Duration(5<<attempt) * time.Millisecond // 10ms, 20ms, 40ms, 80ms
		pause -= time.Duration(rand.Int64N(int64(pause / 2)))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return translate(op, err)
		case <-t.C:
		}
	}
}
