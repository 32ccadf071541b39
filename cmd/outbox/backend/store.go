// Package backend turns the store and broker URLs of the outbox command into
// adapters: pgstore, mysqlstore, mongostore and sqlitestore on the store
// side, kafkapub and natspub on the broker side. Opening does no I/O where
// the drivers allow it (connection pools are lazy), so a relay starts while
// its database or broker is down and waits for it.
//
// It is the one backend layer of the outbox commands, the demo and the
// bench, and exported because the bench (cmd/outbox-bench) is a module of
// its own: it is not a stable API for services, which use the adapters.
package backend

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	outbox "github.com/txoutbox/txoutbox/core"
)

// StoreOptions say which outbox to open. Commands bind them to flags with
// [StoreOptions.AddFlags].
type StoreOptions struct {
	// URL is the database: postgres://, mysql:// (or a go-sql-driver DSN),
	// mongodb:// or mongodb+srv://, sqlite:.
	URL string
	// Table is the outbox table (the collection in MongoDB). Empty selects
	// the adapter's default, "outbox".
	Table string
	// Schema is the PostgreSQL schema of the table. Empty selects "public".
	Schema string
	// Lanes is the lane count that the first Migrate creates (the
	// adapter's Config.Lanes): zero selects outbox.DefaultLanes. The URL's
	// lanes=N parameter sets it too. An outbox keeps the count it was
	// created with, whatever later stores ask.
	Lanes int

	// Tail opens a PostgreSQL outbox in the log-tailing mode
	// (pgstore's Config.Tail): writers put messages in the WAL, and one
	// relay at a time streams them from a logical replication slot. Other
	// stores refuse it.
	Tail bool

	// Source names where URL came from, for error messages ("--store",
	// "OUTBOX_STORE_URL"). Default "--store".
	Source string
	// TailSource names where Tail came from ("--tail", "OUTBOX_TAIL").
	// Default "--tail".
	TailSource string
	// AppName names the connections in the server's session list
	// (PostgreSQL application_name, MongoDB appName) unless the URL does.
	// Default "outbox".
	AppName string
}

// AddFlags binds --store, --table and --schema to o.
func (o *StoreOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.URL, "store", "", "outbox database URL: postgres://…, mysql://…, mongodb://…/db or sqlite:///path.db; lanes=N in its query sets the lane count that migrate creates (default 256)")
	fs.StringVar(&o.Table, "table", "", `outbox table (MongoDB: collection); default "outbox"`)
	fs.StringVar(&o.Schema, "schema", "", `PostgreSQL schema of the outbox table; default "public"`)
}

// AddTailFlag binds --tail to o.Tail, for the commands that open the
// outbox's log (migrate, relay).
func (o *StoreOptions) AddTailFlag(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Tail, "tail", false, "PostgreSQL only: the log-tailing mode (messages go through the WAL and a logical replication slot, not the table); writers, relays and migrate must all use it")
}

func (o StoreOptions) source() string {
	if o.Source == "" {
		return "--store"
	}
	return o.Source
}

func (o StoreOptions) appName() string {
	if o.AppName == "" {
		return "outbox"
	}
	return o.AppName
}

// Store kinds, as [Store.Kind] names them.
const (
	Postgres = "postgres"
	MySQL    = "mysql"
	MongoDB  = "mongodb"
	SQLite   = "sqlite"
)

// storeExamples are shown with every store URL error.
var storeExamples = map[string]string{
	Postgres: "postgres://user:password@localhost:5432/app?sslmode=disable",
	MySQL:    "mysql://user:password@localhost:3306/app",
	MongoDB:  "mongodb://localhost:27017/app?replicaSet=rs0",
	SQLite:   "sqlite:///var/lib/app/outbox.db",
}

// Store is an opened outbox.
type Store struct {
	// Outbox is the adapter. Its optional capabilities are reached through
	// the methods below, which say in one line when it lacks one.
	Outbox outbox.Store
	// Kind is Postgres, MySQL, MongoDB or SQLite.
	Kind string
	// Display names the outbox for people and logs, secrets hidden:
	// "postgres://app:xxxxx@db:5432/app table public.outbox".
	Display string
	// Target is the server, database and table, for error messages.
	Target Target
	// Slot is the logical replication slot of the log-tailing mode
	// (StoreOptions.Tail), empty when the outbox is not opened in it.
	Slot string
	// Lanes is the lane count asked for (StoreOptions.Lanes or the URL's
	// lanes=N), 0 when none was: what Migrate creates if the outbox does
	// not exist yet.
	Lanes int

	closers []func() error
	// slotExists and dropTail reach the slot of the log-tailing mode
	// (PostgreSQL only).
	slotExists func(context.Context) (bool, error)
	dropTail   func(context.Context) error
}

// SlotExists reports whether the replication slot of the log-tailing mode
// exists, or returns an error saying that this store has none.
func (s *Store) SlotExists(ctx context.Context) (bool, error) {
	if s.slotExists == nil {
		return false, s.lacks("tail its log (the --tail mode is PostgreSQL only)")
	}
	return s.slotExists(ctx)
}

// DropTail drops the replication slot and publication of the log-tailing
// mode (messages still in the slot are lost), or returns an error saying
// that this store has none.
func (s *Store) DropTail(ctx context.Context) error {
	if s.dropTail == nil {
		return s.lacks("tail its log (the --tail mode is PostgreSQL only)")
	}
	return s.dropTail(ctx)
}

// Close releases the store's connections.
func (s *Store) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Stats returns the store's statistics reader, or an error saying that this
// kind of store has none.
func (s *Store) Stats() (outbox.StatsReader, error) {
	if sr, ok := s.Outbox.(outbox.StatsReader); ok {
		return sr, nil
	}
	return nil, s.lacks("report statistics (outbox.StatsReader)")
}

// DeadLetters returns the store's dead-letter operations, or an error
// saying that this kind of store has none.
func (s *Store) DeadLetters() (outbox.DeadLetterStore, error) {
	if d, ok := s.Outbox.(outbox.DeadLetterStore); ok {
		return d, nil
	}
	return nil, s.lacks("list, replay or purge dead letters (outbox.DeadLetterStore)")
}

// DeadLetterBacklog returns the store's count of the messages that a
// replay of dead letters holds back, or an error saying that this kind of
// store cannot tell.
func (s *Store) DeadLetterBacklog() (outbox.DeadLetterBacklog, error) {
	if d, ok := s.Outbox.(outbox.DeadLetterBacklog); ok {
		return d, nil
	}
	return nil, s.lacks("count the messages behind dead letters (outbox.DeadLetterBacklog)")
}

// Migrator returns the store's migrator, or an error saying that this kind
// of store creates no schema of its own.
func (s *Store) Migrator() (outbox.Migrator, error) {
	if m, ok := s.Outbox.(outbox.Migrator); ok {
		return m, nil
	}
	return nil, s.lacks("create its schema (outbox.Migrator)")
}

// Ping checks that the database answers; a store that cannot tell is
// assumed to.
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.Outbox.(outbox.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (s *Store) lacks(what string) error {
	return fmt.Errorf("the %s store cannot %s", s.Kind, what)
}

// URLError is a store or broker URL that cannot be used. Its message names
// where the URL came from and shows an example of the right form.
type URLError struct {
	// Source is the flag or variable, e.g. "--store".
	Source string
	// URL is the value, secrets hidden.
	URL string
	// Reason says what is wrong.
	Reason string
	// Example is a URL of the expected form.
	Example string
}

func (e *URLError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", e.Source)
	if e.URL != "" {
		fmt.Fprintf(&b, " %q", e.URL)
	}
	fmt.Fprintf(&b, ": %s", e.Reason)
	if e.Example != "" {
		fmt.Fprintf(&b, " (example: %s %s)", flagOf(e.Source), e.Example)
	}
	return b.String()
}

// flagOf turns a source label into the flag to show in an example.
func flagOf(source string) string {
	switch {
	case strings.HasPrefix(source, "--"):
		return source
	case strings.Contains(source, "BROKER"), strings.Contains(source, "broker"):
		return "--broker"
	case strings.Contains(source, "TOPIC_MAP"), strings.Contains(source, "topic-map"):
		return "--topic-map"
	}
	return "--store"
}

// OpenStore opens the outbox that o describes. A URL that cannot be used is
// a *[URLError]; a configuration the adapter refuses matches
// outbox.ErrInvalidConfig. It does not wait for the database: the
// connections are made when the store is first used.
func OpenStore(ctx context.Context, o StoreOptions) (*Store, error) {
	raw := strings.TrimSpace(o.URL)
	if raw == "" {
		return nil, &URLError{Source: o.source(), Reason: "no store given; set the flag or OUTBOX_STORE_URL", Example: storeExamples[Postgres]}
	}
	kind, err := storeKind(raw)
	if err != nil {
		return nil, &URLError{Source: o.source(), URL: Redact(raw), Reason: err.Error(), Example: storeExamples[Postgres]}
	}
	raw, lanes, err := takeLanes(raw)
	if err != nil {
		return nil, &URLError{Source: o.source(), URL: Redact(raw), Reason: err.Error(), Example: storeExamples[kind] + "?lanes=64"}
	}
	switch {
	case lanes == 0:
	case o.Lanes != 0 && o.Lanes != lanes:
		return nil, &URLError{Source: o.source(), URL: Redact(raw), Reason: fmt.Sprintf("lanes=%d contradicts the lane count %d given elsewhere; give it once", lanes, o.Lanes)}
	default:
		o.Lanes = lanes
	}
	if o.Lanes < 0 || o.Lanes > outbox.MaxLanes {
		return nil, fmt.Errorf("%w: lane count %d: give one from 1 to %d (default %d)", outbox.ErrInvalidConfig, o.Lanes, outbox.MaxLanes, outbox.DefaultLanes)
	}
	if o.Tail && kind != Postgres {
		src := o.TailSource
		if src == "" {
			src = "--tail"
		}
		return nil, &URLError{Source: src,
			Reason: fmt.Sprintf("only PostgreSQL stores can tail their log (logical replication); the %s store is read from its table: leave %s out", kind, src)}
	}
	if o.Schema != "" && kind != Postgres {
		return nil, &URLError{Source: "--schema", URL: o.Schema,
			Reason: fmt.Sprintf("only PostgreSQL stores have a schema; the %s store takes its database from the URL", kind)}
	}
	bad := func(reason string) error {
		return &URLError{Source: o.source(), URL: Redact(raw), Reason: reason, Example: storeExamples[kind]}
	}
	var s *Store
	switch kind {
	case Postgres:
		s, err = openPostgres(ctx, raw, o, bad)
	case MySQL:
		s, err = openMySQL(raw, o, bad)
	case MongoDB:
		s, err = openMongo(raw, o, bad)
	default:
		s, err = openSQLite(raw, o, bad)
	}
	if err != nil {
		return nil, configFlagError(err, o.source(), raw)
	}
	s.Lanes = o.Lanes
	return s, nil
}

// configField finds the Config field an adapter's configuration error is
// about, the value it quotes and what it says of it:
// `pgstore: Config.Table "x;y" has ';' at byte 1; use …`,
// `mysqlstore.Config.Table "x-y": use …`.
var configField = regexp.MustCompile(`Config\.(Table|Schema|Collection|Database) ("(?:[^"\\]|\\.)*")[:;]? *(.*)$`)

// configFlagError rewrites an adapter's refusal of the table, schema or
// database name in terms of the flag that set it (a *[URLError]):
// `--table "x;y": has ';' at byte 1; use ASCII letters, …`. Other errors
// are returned as they are.
func configFlagError(err error, storeSource, raw string) error {
	if !errors.Is(err, outbox.ErrInvalidConfig) {
		return err
	}
	m := configField.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	value, qerr := strconv.Unquote(m[2])
	if qerr != nil {
		return err
	}
	switch m[1] {
	case "Table", "Collection":
		return &URLError{Source: "--table", URL: value, Reason: m[3]}
	case "Schema":
		return &URLError{Source: "--schema", URL: value, Reason: m[3]}
	}
	return &URLError{Source: storeSource, URL: Redact(raw), Reason: fmt.Sprintf("database %q %s", value, m[3])}
}

// storeKind tells the store kind from a URL's scheme, or a go-sql-driver
// DSN from its protocol part.
func storeKind(raw string) (string, error) {
	scheme, _, ok := strings.Cut(raw, ":")
	if ok {
		switch strings.ToLower(scheme) {
		case "postgres", "postgresql":
			return Postgres, nil
		case "mysql", "mariadb":
			return MySQL, nil
		case "mongodb", "mongodb+srv":
			return MongoDB, nil
		case "sqlite", "sqlite3":
			return SQLite, nil
		}
	}
	if strings.Contains(raw, "@tcp(") || strings.Contains(raw, "@unix(") || strings.HasPrefix(raw, "tcp(") {
		return MySQL, nil // user:password@tcp(host:3306)/app
	}
	if !strings.Contains(raw, "://") {
		return "", errors.New("not a URL; give the store as a URL whose scheme names the database (postgres, mysql, mongodb, mongodb+srv or sqlite)")
	}
	return "", fmt.Errorf("unknown database %q; use a postgres, mysql, mongodb, mongodb+srv or sqlite URL", scheme)
}

// takeLanes removes the lanes=N parameter from a store URL's query (or a
// go-sql-driver DSN's parameters) and returns the URL without it, and N, 0
// when the URL has none. The drivers never see it: it configures the
// adapter, not the connection.
func takeLanes(raw string) (string, int, error) {
	start := 0
	if !strings.Contains(raw, "://") {
		start = max(strings.LastIndexByte(raw, '/'), 0) // DSN: the driver reads its parameters after the last slash
	}
	q := strings.IndexByte(raw[start:], '?')
	if q < 0 {
		return raw, 0, nil
	}
	q += start
	base, query := raw[:q], raw[q+1:]
	lanes, found := 0, false
	var kept []string
	for kv := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.EqualFold(k, "lanes") {
			kept = append(kept, kv)
			continue
		}
		if found {
			return base, 0, errors.New("lanes is given twice; give the lane count once")
		}
		found = true
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > outbox.MaxLanes {
			return base, 0, fmt.Errorf("lanes=%s: give the lane count as a number from 1 to %d (default %d)", v, outbox.MaxLanes, outbox.DefaultLanes)
		}
		lanes = n
	}
	if len(kept) == 0 {
		return base, lanes, nil
	}
	return base + "?" + strings.Join(kept, "&"), lanes, nil
}
