package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// translate turns a driver error into one that matches the core sentinel
// that fits, keeping the driver error in the chain. what names the
// operation, for the message.
func translate(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqlitestore: %s: %w", what, err)
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("sqlitestore: %s: %w: %w", what, outbox.ErrUnavailable, err)
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("sqlitestore: %s: %w", what, err)
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("sqlitestore: %s: another connection holds the write lock past the busy timeout: %w: %w",
			what, outbox.ErrUnavailable, err)
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PROTOCOL:
		return fmt.Errorf("sqlitestore: %s: %w: %w", what, outbox.ErrUnavailable, err)
	case sqlite3.SQLITE_ERROR:
		msg := se.Error()
		if strings.Contains(msg, "no such table") || strings.Contains(msg, "no such index") || strings.Contains(msg, "no such column") {
			return fmt.Errorf("sqlitestore: %s: %w: %w", what, outbox.ErrSchemaMissing, err)
		}
	}
	return fmt.Errorf("sqlitestore: %s: %w", what, err)
}

// isBusy reports whether err is SQLite's "the write lock is taken"
// (SQLITE_BUSY or SQLITE_LOCKED and their extended codes).
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// isUniqueViolation reports whether err is a UNIQUE constraint failure.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}
