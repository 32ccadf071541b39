package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/txoutbox/txoutbox/cmd/outbox/cli"
)

// Main runs outbox commands in-process, as the outbox binary does: here
// migrate (twice, it is idempotent; the first creates 16 lanes, as the
// URL's lanes=16 asks) and status on an SQLite outbox.
func ExampleMain() {
	dir, err := os.MkdirTemp("", "outbox-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	store := "sqlite://" + filepath.Join(dir, "app.db")

	var out, logs bytes.Buffer
	ctx := context.Background()
	for _, args := range [][]string{
		{"migrate", "--store", store + "?lanes=16"},
		{"migrate", "--store", store},
		{"status", "--store", store},
	} {
		code := cli.Main(ctx, args, os.Stdin, &out, &logs)
		fmt.Print(strings.ReplaceAll(out.String(), dir, "/data"))
		out.Reset()
		if code != 0 {
			fmt.Printf("exit code %d: %s", code, logs.String())
		}
	}
	// Output:
	// migrated sqlite:/data/app.db table outbox to schema version 1 (from version 0: no tables yet), 16 lanes
	// sqlite:/data/app.db table outbox: already up to date (schema version 1)
	// store         sqlite:/data/app.db table outbox
	// pending       0   (retrying 0, replayed 0)
	// lag           0s  (nothing pending)
	// dead letters  0
	// lanes         16  (held by nobody)
	// relays        0   (no live relay: nothing is published)
}

// A mistake in a URL names its flag (or environment variable), hides the
// password, shows an example, and exits with code 2.
func ExampleMain_usageError() {
	code := cli.Main(context.Background(), []string{"status", "--store", "oracle://scott:tiger@db/orcl"}, os.Stdin, os.Stdout, os.Stdout)
	fmt.Println("exit code", code)
	// Output:
	// outbox: --store "oracle://scott:xxxxx@db/orcl": unknown database "oracle"; use a postgres, mysql, mongodb, mongodb+srv or sqlite URL (example: --store postgres://user:password@localhost:5432/app?sslmode=disable)
	// exit code 2
}
