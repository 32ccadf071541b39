package ui

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// fixture is a console over an in-memory outbox, with a relay's hand on
// the store to dead-letter, retry and deliver records.
type fixture struct {
	t     *testing.T
	store *memory.Store
	srv   *Server
	h     http.Handler
	logs  *syncBuffer
	lanes []outbox.Lane
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, store: memory.NewStore(memory.StoreConfig{Lanes: 4}), logs: &syncBuffer{}}
	cfg.Store = f.store
	cfg.Display = "memory"
	cfg.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.h = srv, srv.Handler()
	return f
}

// write commits messages and returns them with their IDs.
func (f *fixture) write(msgs ...outbox.Message) []outbox.Message {
	f.t.Helper()
	tx := f.store.Begin()
	if err := f.store.Enqueue(context.Background(), tx, msgs...); err != nil {
		f.t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		f.t.Fatal(err)
	}
	return msgs
}

// hold makes the fixture a live relay holding every lane.
func (f *fixture) hold() {
	f.t.Helper()
	ctx := context.Background()
	view, err := f.store.SyncLanes(ctx, outbox.SyncParams{Owner: "relay-1", Lease: time.Hour, Held: f.lanes})
	if err != nil {
		f.t.Fatal(err)
	}
	var want []outbox.Lane
	for _, l := range view.Lanes {
		if l.Owner == "" {
			want = append(want, l.Lane)
		}
	}
	taken, err := f.store.TakeLanes(ctx, outbox.TakeParams{Owner: "relay-1", Lease: time.Hour, Lanes: want})
	if err != nil {
		f.t.Fatal(err)
	}
	f.lanes = append(f.lanes, taken...)
}

// settle reads the pending records and settles those of ids as fn says.
func (f *fixture) settle(p outbox.SettleParams) {
	f.t.Helper()
	f.hold()
	p.Lanes = f.lanes
	if err := f.store.Settle(context.Background(), p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) kill(id, reason string) {
	f.settle(outbox.SettleParams{Dead: []outbox.Failure{{ID: id, Error: reason}}})
}

// sample reads the statistics once, as the sampler's loop does.
func (f *fixture) sample() { f.srv.sampler.take(context.Background()) }

// get fetches path and returns the status and body.
func (f *fixture) get(path string, mod ...func(*http.Request)) (int, string) {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for _, m := range mod {
		m(req)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// post submits a form and returns the response.
func (f *fixture) post(path string, form url.Values, mod ...func(*http.Request)) *http.Response {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, m := range mod {
		m(req)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

func mustNotContain(t *testing.T, what, s string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(s, w) {
			t.Errorf("%s has %q, which it must not", what, w)
		}
	}
}

func httpGet(f *fixture, path string) (*http.Request, *httptest.ResponseRecorder) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return req, rec
}

func (f *fixture) firstDead() string {
	f.t.Helper()
	l, err := f.store.ListDead(context.Background(), outbox.ListDeadParams{Limit: 1})
	if err != nil || len(l) == 0 {
		f.t.Fatalf("ListDead = %d, %v", len(l), err)
	}
	return l[0].ID
}
