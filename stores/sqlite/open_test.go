package sqlitestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

func TestOpenSetsPragmas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Characters a file: URI gives meaning to must survive.
	path := filepath.Join(t.TempDir(), "my dir #1?", "app%20.db")
	if err := mkdirAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, path)
	var journal string
	var busy, sync int
	if err := db.QueryRowContext(ctx, "SELECT journal_mode, (SELECT timeout FROM pragma_busy_timeout), (SELECT synchronous FROM pragma_synchronous) FROM pragma_journal_mode").
		Scan(&journal, &busy, &sync); err != nil {
		t.Fatal(err)
	}
	if journal != "wal" || busy != sqlitestore.DefaultBusyTimeoutMillis || sync != 2 {
		t.Fatalf("journal_mode %s, busy_timeout %d, synchronous %d; want wal, %d, 2 (FULL)", journal, busy, sync, sqlitestore.DefaultBusyTimeoutMillis)
	}
	var file string
	if err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file); err != nil {
		t.Fatal(err)
	}
	if file != path {
		t.Fatalf("opened %q, want %q", file, path)
	}
}

func TestOpenNeedsAFile(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", ":memory:", "file:x.db"} {
		if _, err := sqlitestore.Open(path); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("Open(%q) returned %v, want ErrInvalidConfig", path, err)
		}
	}
	if _, err := sqlitestore.OpenDSN("file:" + filepath.Join(t.TempDir(), "x.db") + "?_txlock=sometimes"); err == nil {
		t.Errorf("OpenDSN accepted an invalid _txlock")
	}
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }
