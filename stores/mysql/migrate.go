package mysqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// migration is one numbered schema change.
type migration struct {
	version    int
	name       string
	statements []string // with {outbox}, {lanes} and {relays} still to replace
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.up.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".up.sql")
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("mysqlstore: migration file %s is not named NNN_name.up.sql", name)
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: version, name: base, statements: splitStatements(string(body))})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// splitStatements splits a script at lines that end with a semicolon and
// drops comment lines.
func splitStatements(script string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(script) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		out = append(out, rest)
	}
	return out
}

// migrateLockTimeout bounds the wait for another process's Migrate when
// ctx has no deadline.
const migrateLockTimeout = 5 * time.Minute

// Migrate implements [outbox.Migrator]: it checks the server version, then
// creates or upgrades the outbox tables. It is idempotent, and safe to run
// from several processes at once: they take turns on a named lock
// (GET_LOCK). Run it before the first Enqueue, never inside a transaction
// of yours: DDL commits the open transaction of its connection in MySQL.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := s.checkServer(ctx); err != nil {
		return err
	}
	all, err := migrations()
	if err != nil {
		return err
	}
	// GET_LOCK belongs to a session: keep one connection throughout.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return translate("migrate", err)
	}
	defer conn.Close()

	var database sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&database); err != nil {
		return translate("migrate", err)
	}
	if !database.Valid {
		return fmt.Errorf("mysqlstore: migrate: the connection has no database; name one in the DSN (user:pass@tcp(host:3306)/dbname)")
	}
	lockName := migrateLockName(database.String, s.cfg.Table)
	wait := migrateLockTimeout
	if deadline, ok := ctx.Deadline(); ok {
		wait = time.Until(deadline)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", lockName, max(1, int(wait.Seconds()))).Scan(&got); err != nil {
		return translate("migrate: take the migration lock", err)
	}
	if got.Int64 != 1 {
		return fmt.Errorf("mysqlstore: migrate: another process held the migration lock %q for %v", lockName, wait.Round(time.Second))
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(rctx, "DO RELEASE_LOCK(?)", lockName)
	}()

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.migrations+` (
  version    INT NOT NULL,
  name       VARCHAR(255) NOT NULL,
  applied_at DATETIME(6) NOT NULL,
  PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`); err != nil {
		return translate("migrate: create the migrations table", err)
	}
	applied := make(map[int]bool)
	rows, err := conn.QueryContext(ctx, "SELECT version FROM "+s.migrations)
	if err != nil {
		return translate("migrate: read applied migrations", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return translate("migrate: read applied migrations", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return translate("migrate: read applied migrations", err)
	}
	rows.Close()

	names := strings.NewReplacer("{outbox}", s.table, "{lanes}", s.lanes, "{relays}", s.relays)
	for _, m := range all {
		if applied[m.version] {
			continue
		}
		// Each statement is idempotent (IF NOT EXISTS, INSERT IGNORE), so a
		// migration cut short is simply run again.
		for _, stmt := range m.statements {
			if _, err := conn.ExecContext(ctx, names.Replace(stmt)); err != nil {
				return translate("migrate: "+m.name, err)
			}
		}
		if _, err := conn.ExecContext(ctx,
			"INSERT INTO "+s.migrations+" (version, name, applied_at) VALUES (?, ?, UTC_TIMESTAMP(6))", m.version, m.name); err != nil {
			return translate("migrate: record "+m.name, err)
		}
	}
	return s.createLanes(ctx, conn)
}

// createLanes inserts the lane rows, 0 to Config.Lanes-1, when the lanes
// table has none: the first Migrate fixes the lane count, later ones keep
// it. It caches the count the table holds.
func (s *Store) createLanes(ctx context.Context, conn *sql.Conn) error {
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.lanes).Scan(&n); err != nil {
		return translate("migrate: count the lanes", err)
	}
	if n == 0 {
		var b strings.Builder
		b.WriteString("INSERT IGNORE INTO " + s.lanes + " (lane) VALUES ")
		for i := range s.cfg.Lanes {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(" + strconv.Itoa(i) + ")")
		}
		if _, err := conn.ExecContext(ctx, b.String()); err != nil {
			return translate("migrate: create the lanes", err)
		}
		n = s.cfg.Lanes
	}
	s.laneCount.Store(int64(n))
	return nil
}

// LatestSchemaVersion is the schema version that [Store.Migrate] of this
// release brings a table to.
func LatestSchemaVersion() int {
	all, err := migrations()
	if err != nil || len(all) == 0 {
		return 0
	}
	return all[len(all)-1].version
}

// SchemaVersion returns the schema version applied to the store's table:
// 0 when Migrate never ran, [LatestSchemaVersion] when it is up to date.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM "+s.migrations).Scan(&v)
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok && me.Number == erNoSuchTable {
		return 0, nil
	}
	return v, translate("schema version", err)
}

// migrateLockName is the GET_LOCK name for one outbox, within MySQL's 64
// characters whatever the database and table are called.
func migrateLockName(database, table string) string {
	sum := sha256.Sum256([]byte(database + "." + table))
	return "txoutbox-migrate-" + hex.EncodeToString(sum[:16])
}
