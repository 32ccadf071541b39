package pgstore

import (
	"flag"
	"fmt"
	"os"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// skipExamplesWithoutServer skips the examples (which print what they did
// against a real server, and cannot skip themselves) when the servers
// package will find no PostgreSQL: no URL in the environment, no local
// binaries, no Docker. Tests skip on their own then. Under
// OUTBOX_TEST_REQUIRE=postgres nothing is skipped, so CI fails instead.
//
// It mirrors the discovery order of package pgserver, which offers no way to
// ask without a testing.TB.
func skipExamplesWithoutServer() {
	if os.Getenv(servers.EnvPostgresURL) != "" || servers.Required(servers.Postgres) {
		return
	}
	dirs := []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin"}
	if _, err := servers.FindBinary([]string{"initdb"}, dirs...); err == nil {
		return
	}
	if _, err := servers.Docker(); err == nil {
		return
	}
	flag.Parse()
	if skip := flag.Lookup("test.skip"); skip != nil && skip.Value.String() == "" {
		_ = skip.Value.Set("^Example")
		fmt.Fprintln(os.Stderr, "pgstore: no PostgreSQL server: skipping the examples")
	}
}
