package servers

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode"
)

// Backend names, as OUTBOX_TEST_REQUIRE and Unavailable spell them.
const (
	Postgres = "postgres"
	MySQL    = "mysql" // MySQL and MariaDB
	Mongo    = "mongo"
	Kafka    = "kafka"
	NATS     = "nats"
	// Chromium is the browser of the console's end-to-end tests, not a
	// server; OUTBOX_TEST_REQUIRE names it all the same.
	Chromium = "chromium"
)

// Environment variables that point the tests at existing servers.
const (
	EnvPostgresURL  = "OUTBOX_TEST_POSTGRES_URL"  // postgres://user@host:port/db?sslmode=disable
	EnvMySQLURL     = "OUTBOX_TEST_MYSQL_URL"     // mysql://user:pass@host:port/db or a go-sql-driver DSN
	EnvMongoURL     = "OUTBOX_TEST_MONGO_URL"     // mongodb://host:port/?directConnection=true
	EnvKafkaBrokers = "OUTBOX_TEST_KAFKA_BROKERS" // host:port[,host:port...]
	EnvNATSURL      = "OUTBOX_TEST_NATS_URL"      // nats://host:port
	EnvChromium     = "OUTBOX_TEST_CHROMIUM"      // path of a chromium binary
	EnvRequire      = "OUTBOX_TEST_REQUIRE"       // backends whose absence fails the tests, or "all"
)

// backend is what Unavailable tells a user about a backend.
type backend struct {
	env     string // the variable that names an existing server
	install string // how to get a local server, "" if the tests start none
}

var backends = map[string]backend{
	Postgres: {EnvPostgresURL, "install PostgreSQL"},
	MySQL:    {EnvMySQLURL, "install MariaDB or MySQL"},
	Mongo:    {EnvMongoURL, "install MongoDB"},
	Kafka:    {EnvKafkaBrokers, "run scripts/services kafka (Apache Kafka from Maven Central, for throwaway nodes)"},
	NATS:     {EnvNATSURL, "install nats-server"},
	Chromium: {EnvChromium, "run scripts/services start chromium (Debian's chromium package)"},
}

// Required reports whether OUTBOX_TEST_REQUIRE names backend (or says "all"),
// so that its absence fails the tests instead of skipping them. The variable
// is a comma- or space-separated list, case-insensitive.
func Required(backend string) bool {
	backend = strings.ToLower(backend)
	for _, w := range requireList() {
		if w == "all" || w == backend {
			return true
		}
	}
	return false
}

func requireList() []string {
	return strings.FieldsFunc(strings.ToLower(os.Getenv(EnvRequire)), func(r rune) bool {
		return r == ',' || unicode.IsSpace(r)
	})
}

// Unavailable ends the test because backend has no server: it skips with a
// one-line message that says how to provide one, or fails with the same line
// when OUTBOX_TEST_REQUIRE names the backend. reason says what was tried; it
// is folded onto the line. A misspelt OUTBOX_TEST_REQUIRE fails the test too,
// so that a typo in CI cannot turn required tests into skips.
func Unavailable(t testing.TB, backend, reason string) {
	t.Helper()
	for _, w := range requireList() {
		if _, ok := backends[w]; !ok && w != "all" {
			t.Fatalf("%s=%q: unknown backend %q: use a list of %s, %s, %s, %s, %s, %s, or all",
				EnvRequire, os.Getenv(EnvRequire), w, Postgres, MySQL, Mongo, Kafka, NATS, Chromium)
			return
		}
	}
	msg := unavailableLine(backend, reason)
	if Required(backend) {
		t.Fatal(msg)
	} else {
		t.Skip(msg)
	}
}

// unavailableLine is e.g. "postgres: no server: set OUTBOX_TEST_POSTGRES_URL,
// install PostgreSQL, or start Docker (reason)".
func unavailableLine(name, reason string) string {
	how := "start Docker"
	if b, ok := backends[name]; ok {
		if b.install == "" {
			how = fmt.Sprintf("set %s or start Docker", b.env)
		} else {
			how = fmt.Sprintf("set %s, %s, or start Docker", b.env, b.install)
		}
	}
	line := name + ": no server: " + how
	if reason = oneLine(reason); reason != "" {
		line += " (" + reason + ")"
	}
	return line
}

// oneLine folds runs of white space, newlines included, into single spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
