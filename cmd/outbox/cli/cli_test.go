package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/cmd/outbox/cli"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

// run runs the CLI in-process with env as its whole environment, stdin as
// its input and terminal saying whether stdin and stderr are terminals.
func run(t *testing.T, env map[string]string, stdin string, terminal bool, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app.App{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut,
		Getenv:     func(k string) string { return env[k] },
		IsTerminal: func(any) bool { return terminal },
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	code = cli.Run(ctx, a, args)
	return out.String(), errOut.String(), code
}

// TestUsageErrors checks the messages of mistakes a person makes: each
// names the flag or variable, suggests or shows the right form, exits 2,
// and never shows a password.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"unknown command", nil, []string{"relya"},
			[]string{`unknown command "relya" for "outbox"`, "Did you mean this?\n\trelay"}},
		{"unknown subcommand", nil, []string{"dead", "lsit"},
			[]string{`unknown command "lsit" for "outbox dead"`, "Did you mean this?\n\tlist"}},
		{"unknown flag", nil, []string{"relay", "--batch-sise", "5"},
			[]string{"unknown flag: --batch-sise", "Did you mean this?\n\t--batch-size"}},
		{"unknown flag of another command", nil, []string{"status", "--broker", "kafka://k:9092"},
			[]string{"unknown flag: --broker"}},
		{"bad flag value", nil, []string{"relay", "--lease", "soon"},
			[]string{`invalid argument "soon" for "--lease"`}},
		{"no store", nil, []string{"status"},
			[]string{"--store: no store given", "OUTBOX_STORE_URL", "example: --store postgres://"}},
		{"unknown database", nil, []string{"migrate", "--store", "oracle://scott:s3cret@db/orcl"},
			[]string{`--store "oracle://scott:xxxxx@db/orcl": unknown database "oracle"`, "example: --store postgres://"}},
		{"store from the environment", map[string]string{"OUTBOX_STORE_URL": "mysql://app:s3cret@db:3306"}, []string{"status"},
			[]string{`OUTBOX_STORE_URL "mysql://app:xxxxx@db:3306": no database`, "example: --store mysql://user:password@localhost:3306/app"}},
		{"bad postgres URL", nil, []string{"dead", "list", "--store", "postgres://app:s3cret@db:54x2/app"},
			[]string{"--store", "invalid port", "example: --store postgres://"}},
		{"schema on mysql", nil, []string{"status", "--store", "mysql://app@db/app", "--schema", "x"},
			[]string{"--schema", "only PostgreSQL stores have a schema"}},
		{"bad table name", nil, []string{"status", "--store", "postgres://db/app", "--table", "out;box"},
			[]string{`--table "out;box": has ';' at byte 3; use ASCII letters`}},
		{"bad schema name", nil, []string{"status", "--store", "postgres://db/app", "--schema", "1st"},
			[]string{`--schema "1st": starts with a digit; use ASCII letters`}},
		{"bad collection name", nil, []string{"status", "--store", "mongodb://db/app", "--table", "system_events"},
			[]string{`--table "system_events": names starting with "system" are reserved by MongoDB`}},
		{"bad broker", nil, []string{"relay", "--store", "postgres://db/app", "--broker", "amqp://guest:s3cret@rabbit"},
			[]string{`--broker "amqp://guest:xxxxx@rabbit": unknown broker "amqp"`, "example: --broker kafka://"}},
		{"bad broker parameter", nil, []string{"relay", "--store", "postgres://db/app", "--broker", "kafka://k1:9092?sasl=scram-sha-512&user=r&password=s3cret&tsl=true"},
			[]string{"--broker", "tsl", "example: --broker kafka://"}},
		{"bad topic map", nil, []string{"relay", "--store", "postgres://db/app", "--broker", "kafka://k1:9092", "--topic-map", "orders"},
			[]string{"--topic-map", "FROM=TO", "example: --topic-map orders=prod.orders"}},
		{"relay settings that contradict", nil, []string{"relay", "--store", "postgres://127.0.0.1:1/app", "--broker", "kafka://127.0.0.1:1", "--lease", "4s", "--read-timeout", "3s"},
			[]string{"invalid relay settings", "--read-timeout (3s) is longer than half the --lease (4s)"}},
		{"bad lane count", nil, []string{"migrate", "--store", "postgres://u:s3cret@db/app?lanes=5000"},
			[]string{`--store "postgres://u:xxxxx@db/app": lanes=5000: give the lane count as a number from 1 to 4096 (default 256)`, "example: --store postgres://", "?lanes=64"}},
		{"negative watch", nil, []string{"status", "--store", "postgres://db/app", "--watch", "-1s"},
			[]string{"--watch: must not be negative"}},
		{"replay without a selection", nil, []string{"dead", "replay", "--store", "postgres://db/app"},
			[]string{"by ID, or pass --all"}},
		{"replay of IDs and --all", nil, []string{"dead", "purge", "--store", "postgres://db/app", "--all", "0190aaaa-0000-7000-8000-000000000000"},
			[]string{"not both"}},
		{"show without an ID", nil, []string{"dead", "show", "--store", "postgres://db/app"},
			[]string{"accepts 1 arg(s), received 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := run(t, tt.env, "", false, tt.args...)
			if code != app.ExitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, app.ExitUsage, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr\n%s\ndoes not contain %q", stderr, w)
				}
			}
			if strings.Contains(stderr, "s3cret") {
				t.Errorf("stderr shows the password:\n%s", stderr)
			}
			if strings.Contains(stderr, "outbox: outbox:") || strings.Contains(stderr, "invalid configuration") {
				t.Errorf("stderr stutters or names a Go error instead of the flag:\n%s", stderr)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	stdout, _, code := run(t, nil, "", false, "--help")
	if code != 0 || !strings.Contains(stdout, "relay") || !strings.Contains(stdout, "flags > environment > config file > defaults") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
	stdout, _, code = run(t, nil, "", false, "relay", "--help")
	if code != 0 || !strings.Contains(stdout, "(env OUTBOX_BATCH_SIZE)") || !strings.Contains(stdout, "(env OUTBOX_STORE_URL)") {
		t.Errorf("relay --help: exit %d\n%s", code, stdout)
	}
	stdout, _, code = run(t, nil, "", false, "--version")
	if code != 0 || !strings.Contains(stdout, cli.Version) {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
}

// TestStoreNotReachable: a one-shot command retries a store that does not
// answer for --wait, logging each attempt, then fails naming the address,
// the attempts and the flag to check.
func TestStoreNotReachable(t *testing.T) {
	t.Parallel()
	_, stderr, code := run(t, nil, "", false, "status", "--store", "postgres://app:s3cret@127.0.0.1:1/app", "--wait", "600ms")
	if code != app.ExitError {
		t.Errorf("exit code %d, want %d", code, app.ExitError)
	}
	for _, w := range []string{"not reachable yet; retrying", "attempt=1", "postgres://app:xxxxx@127.0.0.1:1/app",
		"outbox: nothing answers at 127.0.0.1:1 (PostgreSQL: connection refused); gave up after 2 attempts in ", " (--wait 600ms): check the host and port in --store"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr\n%s\ndoes not contain %q", stderr, w)
		}
	}
	if strings.Contains(stderr, "s3cret") {
		t.Errorf("stderr shows the password:\n%s", stderr)
	}
}

// TestOperatorCommands runs migrate, status and the dead-letter commands
// in-process against PostgreSQL, with the store given once through the
// environment.
func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	url, schema := pgserver.Schema(t)
	env := map[string]string{"OUTBOX_STORE_URL": url, "OUTBOX_SCHEMA": schema}
	ctx := t.Context()

	stdout, stderr, code := run(t, env, "", false, "status")
	if code != app.ExitError || !strings.Contains(stderr, "outbox: the outbox table "+schema+".outbox does not exist") ||
		!strings.Contains(stderr, "create it with `outbox migrate` (with the same OUTBOX_STORE_URL and OUTBOX_SCHEMA)") {
		t.Errorf("status before migrate: exit %d, %q; want the missing schema named", code, stderr)
	}
	for range 2 {
		stdout, stderr, code = run(t, env, "", false, "migrate")
		if code != 0 || !strings.Contains(stdout, fmt.Sprintf("schema version %d", pgstore.LatestSchemaVersion())) {
			t.Fatalf("migrate: exit %d, %q %q", code, stdout, stderr)
		}
	}
	if strings.Contains(stdout, "password") {
		t.Errorf("migrate printed %q", stdout)
	}

	// Seven dead letters, and replay --all in pages of three.
	store := openStore(t, url, schema)
	var ids []string
	for i := range 7 {
		msgs := []outbox.Message{{Topic: "cli.test", Key: fmt.Sprintf("k%d", i), Payload: []byte("hello")}}
		if err := pgx.BeginFunc(ctx, storePool(t, url), func(tx pgx.Tx) error { return store.Enqueue(ctx, tx, msgs...) }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, msgs[0].ID)
	}
	deadLetterAll(t, store, 7)
	stdout, _, _ = run(t, env, "", false, "status")
	if !strings.Contains(stdout, "dead letters  7") || !strings.Contains(stdout, "pending       0") {
		t.Errorf("status printed\n%s", stdout)
	}
	stdout, stderr, code = run(t, env, "", false, "dead", "list", "--limit", "5")
	if code != 0 || strings.Count(stdout, "cli.test") != 5 || !strings.Contains(stderr, "outbox dead list --after") {
		t.Errorf("dead list --limit 5: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, _, code = run(t, env, "", false, "dead", "show", strings.ToUpper(ids[0]))
	if code != 0 || !strings.Contains(stdout, "payload     5 bytes, text\n\nhello") || !strings.Contains(stdout, "gave up") {
		t.Errorf("dead show: exit %d\n%s", code, stdout)
	}

	// replay --all on a terminal asks first; "n" changes nothing.
	_, stderr, code = run(t, env, "n\n", true, "dead", "replay", "--all")
	if code != app.ExitError || !strings.Contains(stderr, "Replay all 7 dead letters of") || !strings.Contains(stderr, "nothing was changed") {
		t.Errorf("replay --all answered n: exit %d, %q", code, stderr)
	}
	stdout, stderr, code = run(t, env, "y\n", true, "dead", "replay", "--all", "--batch", "3")
	if code != 0 || !strings.Contains(stdout, "replayed 7 dead letter(s)") {
		t.Errorf("replay --all answered y: exit %d, %q %q", code, stdout, stderr)
	}
	if s := stats(t, store); s.Dead != 0 || s.Pending != 7 {
		t.Errorf("after replay: %+v", s)
	}

	// Replay by ID, one of which is not a dead letter.
	deadLetterAll(t, store, 7)
	stdout, stderr, code = run(t, env, "", false, "dead", "replay", ids[0], ids[1], "0190aaaa-0000-7000-8000-000000000000")
	if code != app.ExitError || !strings.Contains(stdout, "replayed 2 dead letter(s)") || !strings.Contains(stderr, "1 of the 3 IDs given are not dead letters") {
		t.Errorf("replay by ID: exit %d, %q %q", code, stdout, stderr)
	}
	// Purge by ID asks too; --yes skips the question.
	_, stderr, code = run(t, env, "", false, "dead", "purge", ids[2])
	if code != app.ExitError || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("purge without a terminal: exit %d, %q", code, stderr)
	}
	stdout, _, code = run(t, env, "", false, "dead", "purge", "--yes", ids[2], ids[3])
	if code != 0 || !strings.Contains(stdout, "purged 2 dead letter(s)") {
		t.Errorf("purge --yes: exit %d, %q", code, stdout)
	}
	stdout, _, code = run(t, env, "", false, "dead", "purge", "--all", "-y")
	if code != 0 || !strings.Contains(stdout, "purged 3 dead letter(s)") {
		t.Errorf("purge --all -y: exit %d, %q", code, stdout)
	}
	if s := stats(t, store); s.Dead != 0 || s.Pending != 2 {
		t.Errorf("after purge: %+v", s)
	}
	stdout, _, _ = run(t, env, "", false, "dead", "list")
	if !strings.Contains(stdout, "no dead letters") {
		t.Errorf("dead list printed %q", stdout)
	}
}
