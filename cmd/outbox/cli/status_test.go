package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// TestStatusReplayedAndIdleRelays: a dead letter replayed is shown as
// replayed, not retrying, until a relay tries it again; with no lease held
// status says that an idle relay holds none, and with one it lists it.
func TestStatusReplayedAndIdleRelays(t *testing.T) {
	t.Parallel()
	url, schema := pgserver.Schema(t)
	env := map[string]string{"OUTBOX_STORE_URL": url, "OUTBOX_SCHEMA": schema}
	ctx := t.Context()
	if _, stderr, code := run(t, env, "", false, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d, %s", code, stderr)
	}
	store := openStore(t, url, schema)
	msgs := []outbox.Message{{Topic: "cli.status", Key: "a"}, {Topic: "cli.status", Key: "b"}}
	if err := pgx.BeginFunc(ctx, storePool(t, url), func(tx pgx.Tx) error { return store.Enqueue(ctx, tx, msgs...) }); err != nil {
		t.Fatal(err)
	}
	deadLetterAll(t, store, 2)
	if _, stderr, code := run(t, env, "", false, "dead", "replay", "--yes", msgs[0].ID); code != 0 {
		t.Fatalf("dead replay: exit %d, %s", code, stderr)
	}

	stdout, _, code := run(t, env, "", false, "status")
	for _, want := range []string{
		"(in flight 0, retrying 0, replayed 1)",
		"dead letters  1",
		"relays        0  holding leases (an idle relay holds none)",
	} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("status: exit %d, no %q in\n%s", code, want, stdout)
		}
	}
	var report struct {
		Retrying, Replayed int64
		Relays             []json.RawMessage
	}
	stdout, _, _ = run(t, env, "", false, "status", "--json")
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || report.Retrying != 0 || report.Replayed != 1 || report.Relays == nil {
		t.Errorf("status --json = %s (%v); want retrying 0, replayed 1, relays []", stdout, err)
	}

	// A relay claims the replayed message and fails again: it is retrying,
	// and, while it holds the lease, the relay is listed.
	recs, err := store.Claim(ctx, outbox.ClaimParams{Owner: "relay-1", Limit: 10, Lease: time.Minute})
	if err != nil || len(recs) != 1 {
		t.Fatalf("claim: %d records, %v", len(recs), err)
	}
	stdout, _, _ = run(t, env, "", false, "status")
	for _, want := range []string{"relays        1  holding leases", "relay-1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status with a lease held: no %q in\n%s", want, stdout)
		}
	}
	err = store.ScheduleRetry(ctx, outbox.ScheduleRetryParams{Owner: "relay-1", Retries: []outbox.Retry{{ID: recs[0].ID, Error: "still refused", Delay: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, _ = run(t, env, "", false, "status")
	if !strings.Contains(stdout, "(in flight 0, retrying 1, replayed 0)") {
		t.Errorf("status after the replayed message failed again:\n%s", stdout)
	}
}
