package cli_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/lanetest"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// TestDeadReplaySaysWhatWaitsBehind: before a replay, `dead replay` says
// how many later messages of the dead letters' keys are pending and will
// wait behind them: in the question, with --yes, and for listed IDs.
func TestDeadReplaySaysWhatWaitsBehind(t *testing.T) {
	t.Parallel()
	url, schema := pgserver.Schema(t)
	env := map[string]string{"OUTBOX_STORE_URL": url, "OUTBOX_SCHEMA": schema}
	ctx := t.Context()
	if _, stderr, code := run(t, env, "", false, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d, %s", code, stderr)
	}
	store := openStore(t, url, schema)
	enqueue := func(msgs ...outbox.Message) []outbox.Message {
		t.Helper()
		if err := pgx.BeginFunc(ctx, storePool(t, url), func(tx pgx.Tx) error { return store.Enqueue(ctx, tx, msgs...) }); err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	// Dead letters of keys a and b; then three messages of a and one of c
	// are pending (nothing of b).
	dead := enqueue(outbox.Message{Topic: "cli.replay", Key: "a"}, outbox.Message{Topic: "cli.replay", Key: "b"})
	deadLetterAll(t, store, 2)
	enqueue(outbox.Message{Topic: "cli.replay", Key: "a"}, outbox.Message{Topic: "cli.replay", Key: "a"},
		outbox.Message{Topic: "cli.replay", Key: "a"}, outbox.Message{Topic: "cli.replay", Key: "c"})
	const note = "3 later messages of 1 key are pending behind these dead letters and will wait: once replayed, each dead letter goes first"

	_, stderr, code := run(t, env, "n\n", true, "dead", "replay", "--all")
	if code != app.ExitError || !strings.Contains(stderr, "Replay all 2 dead letters of") || !strings.Contains(stderr, note) {
		t.Errorf("replay --all answered n: exit %d\n%s", code, stderr)
	}
	_, stderr, code = run(t, env, "", false, "dead", "replay", "--all")
	if code != app.ExitError || !strings.Contains(stderr, note) || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("replay --all without a terminal: exit %d\n%s", code, stderr)
	}
	stdout, stderr, code := run(t, env, "", false, "dead", "replay", "--all", "--yes")
	if code != 0 || !strings.Contains(stdout, note) || !strings.Contains(stdout, "replayed 2 dead letter(s)") ||
		strings.Index(stdout, note) > strings.Index(stdout, "replayed 2") {
		t.Errorf("replay --all --yes: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Dead again, the two replayed messages; replayed by ID, a says what
	// waits behind it, b says nothing.
	relay := lanetest.Hold(t, store, "test", nil)
	var letters []outbox.Record
	for _, r := range relay.Read(10) {
		if r.ID == dead[0].ID || r.ID == dead[1].ID {
			letters = append(letters, r)
		}
	}
	if len(letters) != 2 {
		t.Fatalf("read %d of the 2 replayed messages", len(letters))
	}
	relay.Dead("still refused", letters...)
	relay.Leave()
	stdout, _, code = run(t, env, "", false, "dead", "replay", dead[1].ID)
	if code != 0 || strings.Contains(stdout, "pending behind") || !strings.Contains(stdout, "replayed 1 dead letter(s)") {
		t.Errorf("replay of b (nothing behind it): exit %d\n%s", code, stdout)
	}
	stdout, _, code = run(t, env, "", false, "dead", "replay", strings.ToUpper(dead[0].ID))
	if code != 0 || !strings.Contains(stdout, note) || !strings.Contains(stdout, "replayed 1 dead letter(s)") {
		t.Errorf("replay of a: exit %d\n%s", code, stdout)
	}
}
