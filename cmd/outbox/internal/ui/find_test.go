package ui

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

func TestFindAMessageByIDOrKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	// Key k: delivered (retained), dead, retrying, waiting behind it.
	ms := f.write(
		outbox.Message{Topic: "orders", Key: "k"}, outbox.Message{Topic: "orders", Key: "k"},
		outbox.Message{Topic: "orders", Key: "k"}, outbox.Message{Topic: "orders", Key: "k"},
		outbox.Message{Topic: "users", Key: "lonely"},
		outbox.Message{Topic: "users", Key: "dk"}, outbox.Message{Topic: "users", Key: "dk"},
	)
	f.settle(outbox.SettleParams{Delivered: []string{ms[0].ID}, Retain: true})
	f.kill(ms[1].ID, "unknown topic")
	f.kill(ms[5].ID, "too large")
	f.settle(outbox.SettleParams{Retries: []outbox.Retry{{ID: ms[2].ID, Error: "broker timeout", Delay: time.Hour}}})
	f.sample()

	for _, c := range []struct {
		name, query string
		want        []string
	}{
		{"delivered", "?q=" + ms[0].ID, []string{`id="state">delivered`, "acknowledged it"}},
		{"dead", "?q=" + ms[1].ID, []string{`id="state">dead`, "unknown topic", "/dead/" + ms[1].ID}},
		{"retrying", "?q=" + ms[2].ID, []string{`id="state">retrying`, "Attempt 1 failed: broker timeout", "Next attempt in"}},
		{"waiting", "?q=" + ms[3].ID, []string{`id="state">waiting`, "Waits behind " + ms[2].ID}},
		{"next in line", "?q=" + ms[4].ID, []string{`id="state">pending`, "Next in line", "held by relay-1"}},
		{"unknown", "?q=0190aaaa-0000-7000-8000-000000000000", []string{`id="not-found"`, "delivered and deleted"}},
		{"after a dead letter", "?q=" + ms[6].ID, []string{`id="state">pending`, "An earlier message of its key, " + ms[5].ID + ", is a dead letter. If the relay runs with --strict-order"}},
		{"by key", "?q=k", []string{"Key k: pending and dead messages", ms[1].ID, ms[2].ID, ms[3].ID, "state-dead", "state-retrying", "state-waiting"}},
		{"a key that looks like nothing pending", "?q=" + url.QueryEscape("no such key") + "&by=key", []string{"everything written with it was delivered"}},
	} {
		code, page := f.get("/find" + c.query)
		if code != http.StatusOK {
			t.Fatalf("%s: GET /find%s = %d", c.name, c.query, code)
		}
		mustContain(t, c.name, page, c.want...)
	}
	_, page := f.get("/find?q=k")
	mustNotContain(t, "by key", page, ms[0].ID) // delivered records of a key are not listed
}

func TestFindWithoutAnInspector(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	f.srv.inspector = nil
	_, page := f.get("/find?q=k")
	mustContain(t, "find", page, "cannot look messages up")
}
