package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// translate turns a driver error into one that matches the core sentinel
// that fits, keeping the driver error in the chain: [outbox.ErrUnavailable]
// for a lock held too long or a file that cannot be opened or read now,
// [outbox.ErrAccessDenied] for a file that cannot be written (read-only),
// [outbox.ErrSchemaMissing] for a missing table. what names the operation,
// for the message.
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
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
		return fmt.Errorf("sqlitestore: %s: the database file cannot be written: %w: %w", what, outbox.ErrAccessDenied, err)
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

// openError says why the database file at path cannot be opened when
// SQLite answered SQLITE_CANTOPEN (err): a directory that does not exist
// matches [outbox.ErrDatabaseMissing], and a directory or file this process
// may not use [outbox.ErrAccessDenied]; for any other reason err is
// returned as it is.
func openError(path string, err error) error {
	se, ok := errors.AsType[*sqlite.Error](err)
	if !ok || se.Code()&0xff != sqlite3.SQLITE_CANTOPEN {
		return err
	}
	dir := filepath.Dir(path)
	if _, serr := os.Stat(dir); serr != nil {
		switch {
		case errors.Is(serr, fs.ErrNotExist):
			return fmt.Errorf("sqlitestore: Open %s: the directory %s does not exist: %w: %w", path, dir, outbox.ErrDatabaseMissing, se)
		case errors.Is(serr, fs.ErrPermission):
			return fmt.Errorf("sqlitestore: Open %s: %w: %w: %w", path, outbox.ErrAccessDenied, serr, se)
		}
	}
	if f, ferr := os.OpenFile(path, os.O_RDWR, 0); ferr == nil {
		_ = f.Close()
	} else if errors.Is(ferr, fs.ErrPermission) {
		return fmt.Errorf("sqlitestore: Open %s: %w: %w: %w", path, outbox.ErrAccessDenied, ferr, se)
	}
	return err
}
