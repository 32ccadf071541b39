package pgstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

func TestConfigRejectsInvalidNames(t *testing.T) {
	t.Parallel()
	pool := &pgxpool.Pool{} // New does not touch it
	cases := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"schema with a quote", Config{Schema: `public"; DROP TABLE users; --`}, "Config.Schema"},
		{"table with a dot", Config{Table: "my.outbox"}, `Config.Table "my.outbox" has '.'`},
		{"table with a space", Config{Table: "out box"}, "Config.Table"},
		{"table with a hyphen", Config{Table: "out-box"}, "Config.Table"},
		{"table starting with a digit", Config{Table: "1outbox"}, "starts with a digit"},
		{"non-ASCII table", Config{Table: "boîte"}, "Config.Table"},
		{"schema too long", Config{Schema: strings.Repeat("s", MaxSchemaLen+1)}, "64 bytes long"},
		{"table too long", Config{Table: strings.Repeat("t", MaxTableLen+1)}, "41 bytes long"},
		{"negative payload limit", Config{Limits: outbox.Limits{MaxPayloadBytes: -1}}, "MaxPayloadBytes"},
		{"negative lanes", Config{Lanes: -1}, "Config.Lanes is -1"},
		{"too many lanes", Config{Lanes: outbox.MaxLanes + 1}, "Config.Lanes is 4097"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(pool, c.cfg)
			if s != nil || !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New(%+v) = %v, %v; want an ErrInvalidConfig naming %q", c.cfg, s, err, c.want)
			}
			if err := c.cfg.Validate(); !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("Validate() = %v; want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(nil, Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("New(nil pool) = %v; want ErrInvalidConfig", err)
	}
}

func TestConfigDefaultsAndNames(t *testing.T) {
	t.Parallel()
	s, err := New(&pgxpool.Pool{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Config(); got.Schema != "public" || got.Table != "outbox" || got.Lanes != outbox.DefaultLanes {
		t.Fatalf("defaults = %q.%q with %d lanes; want public.outbox with %d", got.Schema, got.Table, got.Lanes, outbox.DefaultLanes)
	}
	if s.Table() != `"public"."outbox"` || s.Channel() != "public.outbox" {
		t.Fatalf("Table() = %s, Channel() = %s", s.Table(), s.Channel())
	}

	mixed, err := New(&pgxpool.Pool{}, Config{Schema: "Billing", Table: "Events_2"})
	if err != nil {
		t.Fatal(err)
	}
	if mixed.Table() != `"Billing"."Events_2"` {
		t.Fatalf("Table() = %s; names are quoted as configured", mixed.Table())
	}

	long, err := New(&pgxpool.Pool{}, Config{Schema: strings.Repeat("s", MaxSchemaLen), Table: strings.Repeat("t", MaxTableLen)})
	if err != nil {
		t.Fatal(err)
	}
	if ch := long.Channel(); len(ch) != maxChannelLen || !strings.HasPrefix(ch, "sss") {
		t.Fatalf("Channel() = %q (%d bytes); want a name cut to %d bytes", ch, len(ch), maxChannelLen)
	}
	other, _ := New(&pgxpool.Pool{}, Config{Schema: strings.Repeat("s", MaxSchemaLen), Table: strings.Repeat("t", MaxTableLen-1) + "u"})
	if other.Channel() == long.Channel() {
		t.Fatalf("two tables with long names share the channel %q", long.Channel())
	}
	if want := (pgx.Identifier{long.names.schema, strings.Repeat("t", MaxTableLen) + "_lanes"}).Sanitize(); long.names.qualLanes != want {
		t.Fatalf("lanes table %s; want the table's name and _lanes, whole", long.names.qualLanes)
	}
}

func TestMigrationsAreNumberedFromOne(t *testing.T) {
	t.Parallel()
	if len(migrations) == 0 || LatestSchemaVersion() != len(migrations) {
		t.Fatalf("%d migrations, LatestSchemaVersion %d", len(migrations), LatestSchemaVersion())
	}
	n := newNames("s", "t")
	for _, m := range migrations {
		text, err := m.render(n)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(text, "{{") {
			t.Fatalf("migration %d left a placeholder: %s", m.version, text)
		}
	}
}
