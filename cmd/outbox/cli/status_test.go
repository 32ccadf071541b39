package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/lanetest"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// TestStatusReplayedAndRelays: a dead letter replayed is shown as
// replayed, not retrying, until a relay tries it again; the topic's row
// counts it pending beside the other dead letter; with no live relay
// status says that nothing is published, and with one it lists it with its
// lanes, idle or not.
func TestStatusReplayedAndRelays(t *testing.T) {
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
	lane := outbox.LaneOf("a", msgs[0].ID, outbox.DefaultLanes)
	for _, want := range []string{
		"pending 1 (retrying 0, replayed 1)",
		"dead letters 1",
		"lanes 256 (held by nobody)",
		"relays 0 (no live relay: nothing is published)",
		"TOPIC PENDING LAG DEAD",
		"LAGGING LANE OWNER PENDING OLDEST",
		fmt.Sprintf(" %d (nobody) 1 ", lane),
	} {
		if code != 0 || !strings.Contains(squeeze(stdout), want) {
			t.Errorf("status: exit %d, no %q in\n%s", code, want, stdout)
		}
	}
	if row := regexp.MustCompile(`TOPIC PENDING LAG DEAD cli\.status 1 \S+ 1 `); !row.MatchString(squeeze(stdout)) {
		t.Errorf("status: no row of topic cli.status with 1 pending, a lag and 1 dead letter in\n%s", stdout)
	}
	var report struct {
		Retrying, Replayed int64
		Lanes              int
		Relays             []json.RawMessage
		Lagging            []struct {
			Lane    int
			Owner   string
			Pending int64
		}
		Topics []struct {
			Topic         string
			Pending, Dead int64
			OldestPending *time.Time `json:"oldest_pending"`
		}
	}
	stdout, _, _ = run(t, env, "", false, "status", "--json")
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || report.Retrying != 0 || report.Replayed != 1 ||
		report.Lanes != outbox.DefaultLanes || report.Relays == nil || len(report.Lagging) != 1 ||
		report.Lagging[0].Lane != lane || report.Lagging[0].Owner != "" || report.Lagging[0].Pending != 1 ||
		len(report.Topics) != 1 || report.Topics[0].Topic != "cli.status" || report.Topics[0].Pending != 1 || report.Topics[0].Dead != 1 || report.Topics[0].OldestPending == nil {
		t.Errorf("status --json = %s (%v); want retrying 0, replayed 1, 256 lanes, relays [], lane %d lagging with 1 pending, topic cli.status with 1 pending since a time and 1 dead", stdout, err, lane)
	}

	// A relay takes the lanes, reads the replayed message and fails again:
	// it is retrying, and the relay is listed with its lanes.
	relay := lanetest.Hold(t, store, "relay-1", nil)
	recs := relay.Read(10)
	if len(recs) != 1 {
		t.Fatalf("read %d records, want the replayed one", len(recs))
	}
	relay.Retry("still refused", time.Hour, recs...)
	stdout, _, _ = run(t, env, "", false, "status")
	for _, want := range []string{
		"pending 1 (retrying 1, replayed 0)",
		"lanes 256 relays", // no lane without a relay
		"relays 1 (relay-1 256 lanes)",
		fmt.Sprintf(" %d relay-1 1 ", lane),
	} {
		if !strings.Contains(squeeze(stdout), want) {
			t.Errorf("status with a relay holding every lane: no %q in\n%s", want, stdout)
		}
	}
}

// squeeze turns every run of white space of s into one space, so that
// tests do not depend on the widths of columns.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestStatusSlotLeftBehind: an outbox with a replication slot that no
// relay streams from shows the slot and the WAL it keeps, and warns that it
// keeps it until a relay takes it or it is dropped; once dropped, status
// shows no slot, and status --tail says that it is missing.
func TestStatusSlotLeftBehind(t *testing.T) {
	t.Parallel()
	url, schema := pgserver.Schema(t)
	env := map[string]string{"OUTBOX_STORE_URL": url, "OUTBOX_SCHEMA": schema}
	ctx := t.Context()
	tailed, err := pgstore.New(storePool(t, url), pgstore.Config{Schema: schema, Tail: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := tailed.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with Tail: %v", err)
	}
	dropped := false
	drop := func() {
		if !dropped {
			dropped = true
			if err := tailed.DropTail(context.Background()); err != nil {
				t.Errorf("DropTail: %v", err)
			}
		}
	}
	t.Cleanup(drop)

	stdout, stderr, code := run(t, env, "", false, "status")
	for _, want := range []string{
		"slot " + tailed.Slot() + " (no relay streams from it)",
		"slot lag ",
		"WAL retained ",
		"warning: no relay streams from the replication slot " + tailed.Slot(),
		"max_slot_wal_keep_size",
		"outbox migrate --drop-tail",
	} {
		if code != 0 || !strings.Contains(squeeze(stdout), want) {
			t.Errorf("status: exit %d (%s), no %q in\n%s", code, stderr, want, stdout)
		}
	}
	var report struct {
		Log *struct {
			Slot          string
			Missing       bool
			Holder        string
			RetainedBytes int64 `json:"retained_bytes"`
		}
	}
	stdout, _, _ = run(t, env, "", false, "status", "--json")
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || report.Log == nil || report.Log.Slot != tailed.Slot() ||
		report.Log.Missing || report.Log.Holder != "" || report.Log.RetainedBytes < 0 {
		t.Errorf("status --json = %s (%v); want log with slot %s, present, no holder", stdout, err, tailed.Slot())
	}

	drop()
	stdout, _, _ = run(t, env, "", false, "status")
	if strings.Contains(stdout, tailed.Slot()) {
		t.Errorf("status after the slot was dropped still shows one:\n%s", stdout)
	}
	stdout, stderr, code = run(t, env, "", false, "status", "--tail")
	for _, want := range []string{"slot " + tailed.Slot() + " (missing)", "warning: the replication slot " + tailed.Slot() + " does not exist", "outbox migrate --tail"} {
		if code != 0 || !strings.Contains(squeeze(stdout), want) {
			t.Errorf("status --tail without the slot: exit %d (%s), no %q in\n%s", code, stderr, want, stdout)
		}
	}
	stdout, _, _ = run(t, env, "", false, "status", "--json")
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || report.Log != nil {
		t.Errorf("status --json after the slot was dropped = %s (%v); want log null", stdout, err)
	}
}
