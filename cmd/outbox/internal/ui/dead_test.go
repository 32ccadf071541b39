package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

// deadLetters writes and dead-letters three messages: a text one of
// orders with headers, a binary one of payments, and one of orders with a
// later pending message of its key behind it.
func deadLetters(f *fixture) (text, binary, behind string) {
	ms := f.write(
		outbox.Message{Topic: "orders", Key: "k1", Payload: []byte(`{"order":1}`), Headers: map[string]string{"traceparent": "00-abc-def-01"}},
		outbox.Message{Topic: "payments", Key: "k2", Payload: []byte{0, 1, 2, 0xff}},
		outbox.Message{Topic: "orders", Key: "k3", Payload: []byte("x")},
	)
	f.kill(ms[0].ID, "topic orders: unknown topic or partition")
	f.kill(ms[1].ID, "message too large")
	f.kill(ms[2].ID, "topic orders: unknown topic or partition")
	f.write(outbox.Message{Topic: "orders", Key: "k3"}, outbox.Message{Topic: "orders", Key: "k3"})
	return ms[0].ID, ms[1].ID, ms[2].ID
}

func TestDeadLetterListFilters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	text, binary, behind := deadLetters(f)
	for _, c := range []struct {
		query        string
		want, unwant []string
	}{
		{"", []string{text, binary, behind, "3 matching of 3"}, nil},
		{"?topic=pay", []string{binary, "1 matching of 3"}, []string{text, behind}},
		{"?error=UNKNOWN+topic", []string{text, behind}, []string{binary}},
		{"?newer=1h", []string{"3 matching"}, nil},
		{"?older=1h", []string{"0 matching", "No dead letters match the filter"}, []string{text}},
	} {
		code, page := f.get("/dead" + c.query)
		if code != http.StatusOK {
			t.Fatalf("GET /dead%s = %d", c.query, code)
		}
		mustContain(t, "/dead"+c.query, page, c.want...)
		mustNotContain(t, "/dead"+c.query, page, c.unwant...)
	}
	if code, page := f.get("/dead?older=soon"); code != http.StatusBadRequest || !strings.Contains(page, "give a duration") {
		t.Errorf("GET /dead?older=soon = %d; want 400 saying how to give a duration", code)
	}
}

func TestDeadLetterShowsPayloadAndHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	text, binary, _ := deadLetters(f)
	_, page := f.get("/dead/" + text)
	mustContain(t, "text dead letter", page, "{&#34;order&#34;:1}", "traceparent", "00-abc-def-01", "unknown topic or partition", `value="replay"`)
	_, page = f.get("/dead/" + text + "?as=hex")
	mustContain(t, "text dead letter as hex", page, "7b 22 6f 72 64 65 72 22")
	_, page = f.get("/dead/" + binary)
	mustContain(t, "binary dead letter", page, "00 01 02 ff", "As hex. Not text")
	mustNotContain(t, "binary dead letter", page, ">as text<")
	if code, _ := f.get("/dead/0190aaaa-0000-7000-8000-000000000000"); code != http.StatusNotFound {
		t.Errorf("GET an unknown dead letter = %d; want 404", code)
	}
}

func TestReplayAsksSaysWhatItHoldsBackAndLogs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	text, _, behind := deadLetters(f)
	form := url.Values{"csrf": {f.srv.csrf}, "action": {"replay"}, "id": {text, behind}}
	r := f.post("/dead/confirm", form)
	page := body(t, r)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("confirm = %d: %s", r.StatusCode, page)
	}
	mustContain(t, "replay confirmation", page, "Replay 2 dead letter(s)?", "holds back <strong>2</strong> later pending message(s) of <strong>1</strong> key(s)", `action="/dead/act"`)
	if dead := f.deadCount(); dead != 3 {
		t.Fatalf("the confirmation changed something: %d dead letters; want 3", dead)
	}

	r = f.post("/dead/act", form)
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/dead?msg=") {
		t.Fatalf("act = %d to %q; want a redirect to the list", r.StatusCode, r.Header.Get("Location"))
	}
	if dead := f.deadCount(); dead != 1 {
		t.Errorf("%d dead letters after replaying 2 of 3; want 1", dead)
	}
	_, page = f.get(r.Header.Get("Location"))
	mustContain(t, "list after replay", page, "Replayed 2 of 2 dead letter(s).")
	mustContain(t, "log", f.logs.String(), "outbox ui: replayed dead letters", "user=anonymous", "remote=192.0.2.1", "action=replay", "replayed=2", text)
}

func TestPurgeAsksThenDeletes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	_, binary, _ := deadLetters(f)
	form := url.Values{"csrf": {f.srv.csrf}, "action": {"purge"}, "id": {binary}}
	page := body(t, f.post("/dead/confirm", form))
	mustContain(t, "purge confirmation", page, "Purge 1 dead letter(s)?", "deleted for good")
	mustNotContain(t, "purge confirmation", page, "holds back")
	if r := f.post("/dead/act", form); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("purge = %d", r.StatusCode)
	}
	if dead := f.deadCount(); dead != 2 {
		t.Errorf("%d dead letters after purging 1 of 3; want 2", dead)
	}
	mustContain(t, "log", f.logs.String(), "outbox ui: purged dead letters", "purged=1")
}

func TestActionsNeedTheFormTokenAndThisOrigin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	text, _, _ := deadLetters(f)
	for _, c := range []struct {
		name string
		form url.Values
		mod  func(*http.Request)
	}{
		{"no token", url.Values{"action": {"purge"}, "id": {text}}, nil},
		{"wrong token", url.Values{"csrf": {"00"}, "action": {"purge"}, "id": {text}}, nil},
		{"other origin", url.Values{"csrf": {f.srv.csrf}, "action": {"purge"}, "id": {text}},
			func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }},
	} {
		mod := []func(*http.Request){}
		if c.mod != nil {
			mod = append(mod, c.mod)
		}
		if r := f.post("/dead/act", c.form, mod...); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: purge = %d; want 403", c.name, r.StatusCode)
		}
	}
	if dead := f.deadCount(); dead != 3 {
		t.Errorf("%d dead letters after refused purges; want 3", dead)
	}
	mustContain(t, "log", f.logs.String(), "refused an action without a valid form token", "refused a cross-origin action")
	// The same origin passes.
	r := f.post("/dead/act", url.Values{"csrf": {f.srv.csrf}, "action": {"purge"}, "id": {text}},
		func(r *http.Request) { r.Header.Set("Origin", "http://example.com") })
	if r.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin purge = %d; want 303", r.StatusCode)
	}
}

func TestReadOnlyHidesAndRefusesActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{ReadOnly: true})
	text, _, _ := deadLetters(f)
	for _, path := range []string{"/dead", "/dead/" + text} {
		_, page := f.get(path)
		mustContain(t, path, page, `id="read-only"`, text)
		mustNotContain(t, path, page, "Replay", "Purge", `name="id"`)
	}
	for _, action := range []string{"replay", "purge"} {
		form := url.Values{"csrf": {f.srv.csrf}, "action": {action}, "id": {text}}
		for _, path := range []string{"/dead/confirm", "/dead/act"} {
			if r := f.post(path, form); r.StatusCode != http.StatusForbidden {
				t.Errorf("read-only %s %s = %d; want 403", action, path, r.StatusCode)
			}
		}
	}
	if dead := f.deadCount(); dead != 3 {
		t.Errorf("%d dead letters; want 3: read-only changes nothing", dead)
	}
	mustContain(t, "log", f.logs.String(), "refused an action in read-only mode")
}

func (f *fixture) deadCount() int {
	f.t.Helper()
	l, err := f.store.ListDead(context.Background(), outbox.ListDeadParams{Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(l)
}
