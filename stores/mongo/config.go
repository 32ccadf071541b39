package mongostore

import (
	"fmt"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Config configures a [Store]. The zero value of every field except
// Database selects the default named in its comment.
type Config struct {
	// Database holds the outbox collections. Required.
	Database string

	// Collection is the name of the outbox collection. Default "outbox".
	// The store also owns, in Database, "<Collection>_keys" (one sequence
	// counter per message key), "<Collection>_lanes" (one document per
	// lane: its owner, epoch and lease), "<Collection>_relays" (the live
	// relays) and "<Collection>_locks" (the lock that serializes lane
	// changes on servers whose updates are not atomic, FerretDB).
	Collection string

	// Lanes is the lane count: relays divide the outbox by lanes, and the
	// records of a key share one ([outbox.LaneOf]). More lanes let more
	// relays share the work. Zero means [outbox.DefaultLanes]; at most
	// [outbox.MaxLanes]. The first [Store.Migrate] fixes it: later ones,
	// and every Store, keep the count the lanes collection holds.
	Lanes int

	// Limits bound what Enqueue accepts: a message over them is rejected
	// before anything is written, so the caller's transaction never
	// commits it. MaxPayloadBytes may not exceed [MaxPayloadBytes], which
	// keeps a record under MongoDB's 16 MiB document limit.
	Limits outbox.Limits

	// AllowNonTransactional lets Enqueue write when its context carries no
	// running transaction. Without a transaction the writes are not atomic
	// with the caller's other writes: a crash between them loses the event
	// or publishes one for a change that never happened, and two writers of
	// one key at once may be delivered out of order. Set it only for a
	// deployment without transactions (a standalone mongod, FerretDB), and
	// keep one sequential writer per key there. Default false: Enqueue
	// outside a transaction fails with [ErrNoTransaction].
	AllowNonTransactional bool
}

// Defaults and limits of Config.
const (
	DefaultCollection = "outbox"

	// MaxNameLen is the longest Database or Collection name accepted.
	MaxNameLen = 63

	// MaxPayloadBytes is the largest Limits.MaxPayloadBytes accepted: 15
	// MiB, leaving room for the record's other fields in a 16 MiB document.
	MaxPayloadBytes = 15 << 20
)

// Validate reports the first invalid field of c, as an error matching
// [outbox.ErrInvalidConfig] that says how to fix it. [New] calls it; a
// command line tool can call it to check its flags before connecting.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

func (c Config) withDefaults() (Config, error) {
	if c.Collection == "" {
		c.Collection = DefaultCollection
	}
	if c.Database == "" {
		return c, fmt.Errorf("%w: mongostore: Config.Database is empty; name the database that holds the outbox", outbox.ErrInvalidConfig)
	}
	if err := checkName("Database", c.Database); err != nil {
		return c, err
	}
	if err := checkName("Collection", c.Collection); err != nil {
		return c, err
	}
	if strings.HasPrefix(c.Collection, "system") {
		return c, fmt.Errorf("%w: mongostore: Config.Collection %q: names starting with \"system\" are reserved by MongoDB", outbox.ErrInvalidConfig, c.Collection)
	}
	switch {
	case c.Lanes == 0:
		c.Lanes = outbox.DefaultLanes
	case c.Lanes < 1 || c.Lanes > outbox.MaxLanes:
		return c, fmt.Errorf("%w: mongostore: Config.Lanes is %d; it must be from 1 to %d, or zero for the default (%d)",
			outbox.ErrInvalidConfig, c.Lanes, outbox.MaxLanes, outbox.DefaultLanes)
	}
	switch p := c.Limits.MaxPayloadBytes; {
	case p < 0:
		return c, fmt.Errorf("%w: mongostore: Config.Limits.MaxPayloadBytes is %d; it must be positive, or zero for the default (%d bytes)",
			outbox.ErrInvalidConfig, p, outbox.DefaultMaxPayloadBytes)
	case p > MaxPayloadBytes:
		return c, fmt.Errorf("%w: mongostore: Config.Limits.MaxPayloadBytes is %d; a MongoDB document holds at most 16 MiB, so the limit is %d bytes",
			outbox.ErrInvalidConfig, p, MaxPayloadBytes)
	}
	return c, nil
}

// checkName accepts ASCII letters, digits, '_' and '-', starting with a
// letter or '_': such names are valid database and collection names on
// every MongoDB version and FerretDB, and need no escaping anywhere.
func checkName(field, name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: mongostore: Config.%s %q %s; use ASCII letters, digits, '_' and '-', starting with a letter or '_', at most %d bytes",
			outbox.ErrInvalidConfig, field, name, why, MaxNameLen)
	}
	if len(name) > MaxNameLen {
		return bad(fmt.Sprintf("is %d bytes long", len(name)))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9', c == '-':
			if i == 0 {
				return bad(fmt.Sprintf("starts with %q", c))
			}
		default:
			return bad(fmt.Sprintf("has %q at byte %d", c, i))
		}
	}
	return nil
}
