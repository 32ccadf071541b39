package pgstore

import (
	"fmt"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Config configures a [Store]. The zero value of every field selects the
// default named in its comment.
type Config struct {
	// Schema holds the outbox table. Default "public". Migrate creates it
	// when it does not exist.
	Schema string

	// Table is the name of the outbox table. Default "outbox". The store
	// also owns "<Table>_lanes" (one row per lane: who holds it, until
	// when, at which epoch), "<Table>_relays" (the live relays), with
	// Tail "<Table>_tail" (the position the relays saved),
	// "<Table>_migrations" (the applied schema versions) and indexes and
	// constraints named "<Table>_...", all in Schema.
	Table string

	// Lanes is the lane count: every record belongs to the lane of its
	// key (outbox.LaneOf), and relays divide the lanes among themselves,
	// so it bounds how many relays can share the work. Default
	// outbox.DefaultLanes (256), at most outbox.MaxLanes. The first
	// Migrate of a table creates the lanes and fixes their count; later
	// Migrates, and stores configured with another count, keep it.
	Lanes int

	// Limits bound what Enqueue accepts: a message over them is rejected
	// before anything is written, so the caller's transaction never
	// commits it.
	Limits outbox.Limits

	// NotifyInterval bounds how often Enqueue wakes listening relays with
	// a NOTIFY in the writer's transaction. PostgreSQL serializes the
	// commits of all transactions that notify, database-wide, each
	// holding one lock through its WAL flush: with a NOTIFY in every
	// transaction, 8 writers committed 2.4 times slower than without an
	// outbox (docs/benchmarks.md). So only the first Enqueue of an
	// interval notifies in its transaction (delivered by its commit, the
	// moment its record becomes readable); those after it within the
	// interval leave their wake-up to one notification that the Store
	// sends from its pool when the interval ends. A transaction still
	// open then is found by the relay's next poll instead (within
	// MinPollInterval while the relay is busy, at most PollInterval when
	// it was idle). Default 5ms; a negative value makes every Enqueue
	// notify in its own transaction.
	NotifyInterval time.Duration

	// Tail makes the outbox a log: Enqueue writes each message to the
	// WAL as a transactional logical decoding message (no row, no NOTIFY),
	// and one relay at a time streams them from a logical replication
	// slot in commit order, publishing each as it commits; the others
	// stand by and take the slot over when its holder dies or stays
	// silent for the relay's Lease. The table keeps only what could not be
	// published at once: failed messages waiting for a retry, the later
	// messages of their keys, and dead letters. It needs wal_level =
	// logical and a role with the REPLICATION attribute; Migrate creates
	// the slot (see [Store.Slot]) and a publication of the same name.
	// Writers and relays must agree on it. See the README's "Tailing the
	// WAL" for when to choose it.
	Tail bool

	// DisableNotify stops Enqueue (and ReplayDead) from issuing a
	// NOTIFY at all. Relays then find new messages by polling alone.
	DisableNotify bool
}

// DefaultNotifyInterval is Config.NotifyInterval's default.
const DefaultNotifyInterval = 5 * time.Millisecond

// Defaults of Config.
const (
	DefaultSchema = "public"
	DefaultTable  = "outbox"
)

// Longest names accepted. PostgreSQL cuts identifiers at 63 bytes; the
// table's name is shorter so that the names derived from it
// ("<Table>_delivered_idx", "<Table>_relays_pkey", "<Table>_migrations")
// stay whole.
const (
	MaxSchemaLen = 63
	MaxTableLen  = 40
)

// Validate reports the first invalid field of c, as an error matching
// [outbox.ErrInvalidConfig] that says how to fix it. [New] calls it; a
// command line tool can call it to check its flags before connecting.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns c with its zero fields set to their defaults, or the
// first field that is invalid.
func (c Config) withDefaults() (Config, error) {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if err := checkIdentifier("Schema", c.Schema, MaxSchemaLen); err != nil {
		return c, err
	}
	if err := checkIdentifier("Table", c.Table, MaxTableLen); err != nil {
		return c, err
	}
	if c.NotifyInterval == 0 {
		c.NotifyInterval = DefaultNotifyInterval
	}
	if c.Lanes == 0 {
		c.Lanes = outbox.DefaultLanes
	}
	if c.Lanes < 1 || c.Lanes > outbox.MaxLanes {
		return c, fmt.Errorf("%w: pgstore: Config.Lanes is %d; it must be between 1 and %d, or zero for the default (%d)",
			outbox.ErrInvalidConfig, c.Lanes, outbox.MaxLanes, outbox.DefaultLanes)
	}
	if c.Limits.MaxPayloadBytes < 0 {
		return c, fmt.Errorf("%w: pgstore: Config.Limits.MaxPayloadBytes is %d; it must be positive, or zero for the default (%d bytes)",
			outbox.ErrInvalidConfig, c.Limits.MaxPayloadBytes, outbox.DefaultMaxPayloadBytes)
	}
	return c, nil
}

// checkIdentifier accepts names made of ASCII letters, digits and
// underscores that start with a letter or an underscore. Such a name needs
// no escaping, so what the user configured is exactly what appears (quoted,
// hence case-sensitive) in every statement.
func checkIdentifier(field, name string, maxLen int) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: pgstore: Config.%s %q %s; use ASCII letters, digits and underscores, starting with a letter or underscore, at most %d bytes",
			outbox.ErrInvalidConfig, field, name, why, maxLen)
	}
	if len(name) > maxLen {
		return bad(fmt.Sprintf("is %d bytes long", len(name)))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9':
			if i == 0 {
				return bad("starts with a digit")
			}
		default:
			return bad(fmt.Sprintf("has %q at byte %d", c, i))
		}
	}
	return nil
}
