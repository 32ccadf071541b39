package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// migrationFiles are the schema changes, numbered from 001 and applied in
// order. A file is a text/template: {{.Table}} is the quoted, qualified
// outbox table and {{.Name "suffix"}} the quoted name "<table>_suffix" of
// one of its indexes or constraints. Released files never change; a new
// release adds a file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered file of migrationFiles.
type migration struct {
	version int
	name    string // the file name without number and extension
	text    string
}

// migrations are parsed once; a malformed file is a bug of this package
// caught by its tests.
var migrations = mustLoadMigrations()

func mustLoadMigrations() []migration {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		panic("pgstore: " + err.Error())
	}
	return ms
}

func loadMigrations(fsys fs.FS) ([]migration, error) {
	files, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, f := range files {
		base := strings.TrimSuffix(path.Base(f), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 3 || name == "" {
			return nil, fmt.Errorf("migration %s is not named NNN_name.sql", f)
		}
		text, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, text: string(text)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration versions must run 1, 2, 3... without gaps; found %d at position %d", m.version, i+1)
		}
	}
	return ms, nil
}

// render fills in the table's names.
func (m migration) render(n names) (string, error) {
	t, err := template.New(m.name).Option("missingkey=error").Parse(m.text)
	if err != nil {
		return "", fmt.Errorf("migration %03d_%s: %w", m.version, m.name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, migrationNames{n}); err != nil {
		return "", fmt.Errorf("migration %03d_%s: %w", m.version, m.name, err)
	}
	return b.String(), nil
}

// migrationNames is what a migration template sees.
type migrationNames struct{ n names }

// Table is the quoted, schema-qualified outbox table.
func (m migrationNames) Table() string { return m.n.qualTab }

// Lanes is the quoted, schema-qualified lanes table.
func (m migrationNames) Lanes() string { return m.n.qualLanes }

// Relays is the quoted, schema-qualified relays table.
func (m migrationNames) Relays() string { return m.n.qualRelays }

// Name is the quoted name "<table>_<suffix>" of an index or constraint.
func (m migrationNames) Name(suffix string) string { return m.n.index(suffix) }

// LatestSchemaVersion is the schema version that [Store.Migrate] of this
// release brings a table to.
func LatestSchemaVersion() int { return len(migrations) }

// Migrate creates the schema (when missing), the outbox table, its lanes
// and relays tables and their indexes, or brings them to
// [LatestSchemaVersion]. Applied versions are recorded in
// "<Table>_migrations". When the lanes table is empty it creates
// Config.Lanes lanes; once created, their count never changes. It implements [outbox.Migrator]: it is
// idempotent, and several processes may run it at once, since it works in
// one transaction that first takes an advisory lock of the schema. Run it
// from a deployment step (`outbox migrate`) or at startup, never from a
// writing transaction.
func (s *Store) Migrate(ctx context.Context) error {
	// READ COMMITTED whatever the session's default, so that the version
	// is read after the lock is granted, not when it was asked for.
	opts := pgx.TxOptions{IsoLevel: pgx.ReadCommitted}
	var lanes int64
	err := pgx.BeginTxFunc(ctx, s.pool, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, s.names.migrKey); err != nil {
			return err
		}
		// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
		// database even when the schema exists; ask first.
		var exists bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1::text)`,
			s.names.schema).Scan(&exists)
		if err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{s.names.schema}.Sanitize()); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.names.qualVer+` (
	version    integer     PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`)
		if err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, s.sql.version).Scan(&current); err != nil {
			return err
		}
		if current > len(migrations) {
			return fmt.Errorf("the table is at schema version %d, newer than this release knows (%d); upgrade pgstore", current, len(migrations))
		}
		for _, m := range migrations[current:] {
			text, err := m.render(s.names)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, text); err != nil {
				return fmt.Errorf("migration %03d_%s: %w", m.version, m.name, err)
			}
			_, err = tx.Exec(ctx, `INSERT INTO `+s.names.qualVer+` (version, name) VALUES ($1::integer, $2::text)`, m.version, m.name)
			if err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO `+s.names.qualLanes+` (lane)
SELECT generate_series(0, $1::integer - 1) WHERE NOT EXISTS (SELECT FROM `+s.names.qualLanes+`)`, s.cfg.Lanes)
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, s.sql.laneCount).Scan(&lanes)
	})
	if err == nil && lanes > 0 {
		s.lanes.Store(lanes)
	}
	if err == nil && s.cfg.Tail {
		return s.migrateTail(ctx)
	}
	return translate("migrate", err)
}

// SchemaVersion returns the schema version applied to the store's table:
// 0 when Migrate never ran, [LatestSchemaVersion] when it is up to date.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, s.sql.version).Scan(&v)
	if err != nil && classify(err) == outbox.ErrSchemaMissing {
		return 0, nil
	}
	return v, translate("schema version", err)
}
