package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// The slot's lines and warning, by the state of the slot; the no-holder
// case runs against PostgreSQL in cli's TestStatusSlotLeftBehind.
func TestWriteTextSlot(t *testing.T) {
	lag := 2.5
	for _, tc := range []struct {
		name        string
		log         *outbox.LogStats
		want, avoid []string
	}{
		{"no slot", nil, nil, []string{"slot", "warning"}},
		{"streamed", &outbox.LogStats{Slot: "txoutbox_s_outbox", Holder: "relay-a", LagBytes: 3 << 20, LagSeconds: &lag, RetainedBytes: 5 << 30},
			[]string{"slot txoutbox_s_outbox (streamed by relay-a)", "slot lag 3.0 MiB (2.5s)", "WAL retained 5.0 GiB"}, []string{"warning"}},
		{"lag in seconds unknown", &outbox.LogStats{Slot: "txoutbox_s_outbox", Holder: "relay-a", LagBytes: 100},
			[]string{"slot lag 100 B (unknown)"}, []string{"warning"}},
		{"missing", &outbox.LogStats{Slot: "txoutbox_s_outbox", Missing: true},
			[]string{"slot txoutbox_s_outbox (missing)", "warning: the replication slot txoutbox_s_outbox does not exist", "outbox migrate --tail"}, []string{"slot lag"}},
		{"lost", &outbox.LogStats{Slot: "txoutbox_s_outbox", Holder: "relay-a", Lost: true},
			[]string{"warning: PostgreSQL removed WAL", "max_slot_wal_keep_size", "the messages in it are lost", "outbox migrate --drop-tail"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			NewReport("postgres://db/app", outbox.Stats{Lanes: 4, Log: tc.log}, time.Now()).WriteText(&buf)
			out := strings.Join(strings.Fields(buf.String()), " ")
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in\n%s", w, buf.String())
				}
			}
			for _, a := range tc.avoid {
				if strings.Contains(out, a) {
					t.Errorf("%q in\n%s", a, buf.String())
				}
			}
		})
	}
}
