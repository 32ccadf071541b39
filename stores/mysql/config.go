package mysqlstore

import (
	"fmt"
	"regexp"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Config configures a [Store]. The zero value is ready to use.
type Config struct {
	// Table is the outbox table, in the database the connection uses. The
	// store also creates <Table>_lanes (one row per lane: its holder and
	// epoch), <Table>_relays (the live relays) and <Table>_migrations (the
	// applied schema versions). ASCII letters,
	// digits and underscores, starting with a letter or an underscore, at
	// most 53 characters so that the companion names fit MySQL's 64.
	// Default "outbox".
	Table string

	// Limits bound what Enqueue accepts. The zero value selects the
	// defaults of [outbox.Limits] (1 MiB payloads).
	Limits outbox.Limits

	// Lanes is the lane count that the first [Store.Migrate] of the table
	// creates: records are spread over lanes by key ([outbox.LaneOf]), and
	// relays share the work by lanes, so it bounds how many relays can
	// share one outbox. Zero means [outbox.DefaultLanes]; at most
	// [outbox.MaxLanes]. The count is fixed when the tables are created:
	// later Migrates keep it, and the store always uses the count in the
	// table.
	Lanes int
}

// DefaultTable is the default of [Config.Table].
const DefaultTable = "outbox"

// maxTableLen leaves room for the longest suffix, "_migrations", within
// MySQL's 64-character identifiers.
const maxTableLen = 64 - len("_migrations")

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withDefaults returns c with its zero fields set, or an error matching
// [outbox.ErrInvalidConfig] that says what to change.
func (c Config) withDefaults() (Config, error) {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if len(c.Table) > maxTableLen || !tableName.MatchString(c.Table) {
		return c, fmt.Errorf("%w: mysqlstore.Config.Table %q: use ASCII letters, digits and underscores, starting with a letter or underscore, at most %d characters",
			outbox.ErrInvalidConfig, c.Table, maxTableLen)
	}
	if c.Limits.MaxPayloadBytes < 0 {
		return c, fmt.Errorf("%w: mysqlstore.Config.Limits.MaxPayloadBytes is %d; use a positive size, or zero for %d",
			outbox.ErrInvalidConfig, c.Limits.MaxPayloadBytes, outbox.DefaultMaxPayloadBytes)
	}
	if c.Lanes == 0 {
		c.Lanes = outbox.DefaultLanes
	}
	if c.Lanes < 1 || c.Lanes > outbox.MaxLanes {
		return c, fmt.Errorf("%w: mysqlstore.Config.Lanes is %d; use 1 to %d, or zero for %d",
			outbox.ErrInvalidConfig, c.Lanes, outbox.MaxLanes, outbox.DefaultLanes)
	}
	return c, nil
}

// maxPayload is the effective payload limit.
func (c Config) maxPayload() int {
	if c.Limits.MaxPayloadBytes <= 0 {
		return outbox.DefaultMaxPayloadBytes
	}
	return c.Limits.MaxPayloadBytes
}

// quote returns name as a MySQL identifier. Names are validated, so there
// is no backquote to escape.
func quote(name string) string { return "`" + name + "`" }
