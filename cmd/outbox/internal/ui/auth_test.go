package ui

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Auth: Auth{Token: "s3cret"}})
	if code, _ := f.get("/"); code != http.StatusUnauthorized {
		t.Errorf("GET / without the token = %d; want 401", code)
	}
	if code, _ := f.get("/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") }); code != http.StatusUnauthorized {
		t.Errorf("GET / with a wrong token = %d; want 401", code)
	}
	if code, _ := f.get("/api/overview", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }); code != http.StatusOK {
		t.Errorf("GET /api/overview with the token = %d; want 200", code)
	}
	// The token in a link becomes a cookie, and leaves the address.
	req, rec := httpGet(f, "/dead?topic=x&token=s3cret")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/dead?topic=x" {
		t.Fatalf("GET with ?token = %d to %q; want 303 to /dead?topic=x", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies %+v; want one HttpOnly SameSite=Strict cookie", cookies)
	}
	_ = req
	if code, _ := f.get("/dead", func(r *http.Request) { r.AddCookie(cookies[0]) }); code != http.StatusOK {
		t.Errorf("GET /dead with the cookie = %d; want 200", code)
	}
	// Actions are logged as the token's.
	deadLetters(f)
	text := f.firstDead()
	r := f.post("/dead/act", url.Values{"csrf": {f.srv.csrf}, "action": {"purge"}, "id": {text}},
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") })
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("purge with the token = %d", r.StatusCode)
	}
	mustContain(t, "log", f.logs.String(), "user=token", "refused a request without valid credentials")
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Auth: Auth{User: "ops", Password: "pw"}})
	req, rec := httpGet(f, "/")
	_ = req
	if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("GET / without credentials = %d, WWW-Authenticate %q; want 401 and a Basic challenge", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	if code, _ := f.get("/", func(r *http.Request) { r.SetBasicAuth("ops", "nope") }); code != http.StatusUnauthorized {
		t.Errorf("GET / with a wrong password = %d; want 401", code)
	}
	deadLetters(f)
	text := f.firstDead()
	r := f.post("/dead/act", url.Values{"csrf": {f.srv.csrf}, "action": {"replay"}, "id": {text}},
		func(r *http.Request) { r.SetBasicAuth("ops", "pw") })
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("replay with basic auth = %d", r.StatusCode)
	}
	mustContain(t, "log", f.logs.String(), "user=ops", "action=replay")
}

func TestAddressCheck(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		addr     string
		auth     Auth
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:8089", Auth{}, false, true},
		{"localhost:8089", Auth{}, false, true},
		{"[::1]:8089", Auth{}, false, true},
		{":8089", Auth{}, false, false},
		{"0.0.0.0:8089", Auth{}, false, false},
		{"10.1.2.3:8089", Auth{}, false, false},
		{"0.0.0.0:8089", Auth{Token: "t"}, false, true},
		{"0.0.0.0:8089", Auth{User: "u", Password: "p"}, false, true},
		{"0.0.0.0:8089", Auth{}, true, true},
		{"8089", Auth{}, false, false},
	} {
		err := CheckAddr(c.addr, c.auth, c.insecure)
		if (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q, auth %v, insecure %v) = %v; want ok %v", c.addr, c.auth.Enabled(), c.insecure, err, c.ok)
		}
	}
}

func TestOptionsAuth(t *testing.T) {
	t.Parallel()
	if a, err := (Options{BasicAuth: "ops:p:w"}).Auth(); err != nil || a.User != "ops" || a.Password != "p:w" {
		t.Errorf("basic auth ops:p:w = %+v, %v; want user ops, password p:w", a, err)
	}
	for _, o := range []Options{{BasicAuth: "ops"}, {BasicAuth: ":pw"}, {Token: "t", BasicAuth: "u:p"}} {
		if _, err := o.Auth(); err == nil {
			t.Errorf("%+v: no error; want one", o)
		}
	}
}
