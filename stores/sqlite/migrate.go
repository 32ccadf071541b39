package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered step of the schema.
type migration struct {
	version int
	name    string
	sql     string // with {placeholders}
}

// migrations returns the embedded migrations in version order. Files are
// named NNN_name.sql; numbers start at 1 and have no gaps.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".sql")
		num, name, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("sqlitestore: migration file %s is not named NNN_name.sql", e.Name())
		}
		text, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: version, name: name, sql: string(text)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlitestore: migration %d is missing", i+1)
		}
	}
	return ms, nil
}

// LatestSchemaVersion is the schema version this package migrates to.
func LatestSchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// SchemaVersion is the schema version this package migrates to.
//
// Deprecated: use [LatestSchemaVersion]; [Store.SchemaVersion] reads the
// version a database is at.
func SchemaVersion() int { return LatestSchemaVersion() }

// SchemaVersion returns the schema version applied to the store's table:
// 0 when Migrate never ran, [LatestSchemaVersion] when it is up to date.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	err := s.db.QueryRowContext(ctx, `SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?`,
		s.table+"_migrations").Scan(&exists)
	if err != nil || !exists {
		return 0, translate("SchemaVersion", err)
	}
	var v int
	err = s.db.QueryRowContext(ctx, s.q.replacer.Replace(`SELECT coalesce(max(version), 0) FROM {migrations}`)).Scan(&v)
	return v, translate("SchemaVersion", err)
}

// Migrate implements [outbox.Migrator]: it creates or upgrades the outbox
// table, its indexes, "<Table>_lanes" (filled with Config.Lanes lanes when
// it is empty, so the first Migrate fixes the lane count), "<Table>_relays"
// and "<Table>_migrations", which records the versions applied. All missing steps run in one IMMEDIATE transaction (SQLite's DDL
// is transactional), so Migrate is idempotent and safe to run from several
// processes at once: they take turns, and later ones find nothing to do. It
// refuses a database migrated by a newer version of this package.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var lanes int
	err = s.writeTx(ctx, "Migrate", func(conn *sql.Conn, now int64) error {
		_, err := conn.ExecContext(ctx, s.q.replacer.Replace(`
CREATE TABLE IF NOT EXISTS {migrations} (
	version    INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at INTEGER NOT NULL
) STRICT`))
		if err != nil {
			return err
		}
		var current int
		err = conn.QueryRowContext(ctx, s.q.replacer.Replace(`SELECT coalesce(max(version), 0) FROM {migrations}`)).Scan(&current)
		if err != nil {
			return err
		}
		if current > len(ms) {
			return fmt.Errorf("%w: the outbox schema of table %s is at version %d, newer than this sqlitestore knows (%d); upgrade the package",
				outbox.ErrUnsupported, s.table, current, len(ms))
		}
		for _, m := range ms[current:] {
			if _, err := conn.ExecContext(ctx, s.q.replacer.Replace(m.sql)); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
			_, err := conn.ExecContext(ctx, s.q.replacer.Replace(`INSERT INTO {migrations} (version, name, applied_at) VALUES (?, ?, ?)`),
				m.version, m.name, now)
			if err != nil {
				return err
			}
		}
		// The lanes, once: a table that has them keeps their count.
		if _, err = conn.ExecContext(ctx, s.q.fillLanes, s.lanes); err != nil {
			return err
		}
		return conn.QueryRowContext(ctx, s.q.laneCount).Scan(&lanes)
	})
	if err != nil {
		return err
	}
	s.laneMu.Lock()
	s.laneCount = lanes // Enqueue needs not read it
	s.laneMu.Unlock()
	return nil
}
