package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Config configures a [Server].
type Config struct {
	// Store is the outbox. The pages use its optional capabilities
	// (StatsReader, DeadLetterStore, DeadLetterBacklog, Inspector) and say
	// so where one is missing.
	Store outbox.Store
	// Display names the store on the pages, secrets hidden.
	Display string
	// Logger receives every action (replay, purge) with who asked, and
	// failures. Default slog.Default().
	Logger *slog.Logger
	// Auth, when set, is required of every request.
	Auth Auth
	// ReadOnly hides replay and purge and refuses them.
	ReadOnly bool
	// Interval is how often the overview's statistics are read; zero
	// means 2s. Every browser sees the same samples.
	Interval time.Duration
	// Window is how much history the charts keep; zero means 10 minutes.
	Window time.Duration
}

// Auth is what a request must carry. The zero value lets everyone in.
type Auth struct {
	// Token is accepted as "Authorization: Bearer <token>", or once as
	// ?token=<token>, which sets a cookie for the browser.
	Token string
	// User and Password are HTTP basic authentication.
	User, Password string
}

// Enabled reports whether any credential is required.
func (a Auth) Enabled() bool { return a.Token != "" || a.User != "" }

// Server serves the console. Create it with [New], run its sampler with
// [Server.Run] and serve [Server.Handler].
type Server struct {
	cfg       Config
	log       *slog.Logger
	pages     map[string]*template.Template
	csrf      string
	sampler   *sampler
	stats     outbox.StatsReader
	dead      outbox.DeadLetterStore
	backlog   outbox.DeadLetterBacklog
	inspector outbox.Inspector
}

// New returns a console for cfg.Store.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("ui: Config.Store is nil")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Minute
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.stats, _ = cfg.Store.(outbox.StatsReader)
	s.dead, _ = cfg.Store.(outbox.DeadLetterStore)
	s.backlog, _ = cfg.Store.(outbox.DeadLetterBacklog)
	s.inspector, _ = cfg.Store.(outbox.Inspector)
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s.csrf = hex.EncodeToString(b[:])
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	s.sampler = newSampler(s.stats, cfg.Interval, cfg.Window)
	return s, nil
}

// Observer returns the observer a relay in the same process reports to,
// so the overview shows deliveries per second and per topic, and when each
// of its lanes last delivered. Ask for it before serving: from then on
// the samples count deliveries (from zero).
func (s *Server) Observer() outbox.Observer {
	s.sampler.mu.Lock()
	s.sampler.observed = true
	s.sampler.mu.Unlock()
	return s.sampler
}

// Run reads the statistics every Interval until ctx ends.
func (s *Server) Run(ctx context.Context) { s.sampler.run(ctx) }

// Handler returns the console's routes behind authentication.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /api/overview", s.overviewJSON)
	mux.HandleFunc("GET /find", s.find)
	mux.HandleFunc("GET /dead", s.deadList)
	mux.HandleFunc("GET /dead/{id}", s.deadShow)
	mux.HandleFunc("POST /dead/confirm", s.guard(s.deadConfirm))
	mux.HandleFunc("POST /dead/act", s.guard(s.deadAct))
	return s.authenticate(securityHeaders(mux))
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ago":      ago,
		"duration": roundDuration,
		"stamp":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"deref":    deref,
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"overview", "find", "dead", "letter", "confirm", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

// page is what every template gets: the layout's fields and the page's own.
type page struct {
	Title    string
	Nav      string
	Store    string
	ReadOnly bool
	CSRF     string
	Data     any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	err := s.pages[name].ExecuteTemplate(w, "layout", page{
		Title: title, Nav: name, Store: s.cfg.Display, ReadOnly: s.cfg.ReadOnly, CSRF: s.csrf, Data: data,
	})
	if err != nil {
		s.log.Error("outbox ui: rendering a page failed", slog.String("page", name), slog.Any("error", err))
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", "Error", msg)
}

// securityHeaders keeps the pages out of frames and scripts to our own.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

const tokenCookie = "outbox_ui_token"

type whoKey struct{}

// who says who made a request, for the action log: the basic-auth user,
// "token", or "anonymous", and the remote address.
func who(r *http.Request) []any {
	user, _ := r.Context().Value(whoKey{}).(string)
	if user == "" {
		user = "anonymous"
	}
	return []any{slog.String("user", user), slog.String("remote", r.RemoteAddr)}
}

// authenticate lets a request through when it carries the configured
// credential.
func (s *Server) authenticate(next http.Handler) http.Handler {
	a := s.cfg.Auth
	if !a.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.User != "" {
			if u, p, ok := r.BasicAuth(); ok && equal(u, a.User) && equal(p, a.Password) {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, u)))
				return
			}
		}
		if a.Token != "" {
			if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(tok, a.Token) {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, "token")))
				return
			}
			if c, err := r.Cookie(tokenCookie); err == nil && equal(c.Value, a.Token) {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, "token")))
				return
			}
			if tok := r.URL.Query().Get("token"); tok != "" && equal(tok, a.Token) && r.Method == http.MethodGet {
				// Trade the token in the link for a cookie, and drop it
				// from the address bar (and from history).
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: a.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
				q := r.URL.Query()
				q.Del("token")
				u := *r.URL
				u.RawQuery = q.Encode()
				http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
				return
			}
		}
		s.log.Warn("outbox ui: refused a request without valid credentials", slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
		if a.User != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="outbox", charset="UTF-8"`)
		}
		http.Error(w, "unauthorized: this console needs a token (?token=… once, or Authorization: Bearer …) or basic authentication", http.StatusUnauthorized)
	})
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// guard protects a state-changing POST: it refuses it in read-only mode,
// and unless the form carries this process's CSRF token and the browser's
// Origin (when it sends one) is this host.
func (s *Server) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.ReadOnly {
			s.log.Warn("outbox ui: refused an action in read-only mode", append(who(r), slog.String("path", r.URL.Path))...)
			s.fail(w, r, http.StatusForbidden, "This console is read-only: replay and purge are disabled.")
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			u, err := url.Parse(origin)
			if err != nil || u.Host != r.Host {
				s.log.Warn("outbox ui: refused a cross-origin action", append(who(r), slog.String("origin", origin))...)
				s.fail(w, r, http.StatusForbidden, "Refused: the request came from another site.")
				return
			}
		}
		if !equal(r.PostFormValue("csrf"), s.csrf) {
			s.log.Warn("outbox ui: refused an action without a valid form token", append(who(r), slog.String("path", r.URL.Path))...)
			s.fail(w, r, http.StatusForbidden, "Refused: the form is stale or did not come from this console. Reload the page and try again.")
			return
		}
		next(w, r)
	}
}

// deref gives templates the value behind an optional field.
func deref(p any) any {
	switch v := p.(type) {
	case *float64:
		return *v
	case *time.Time:
		return *v
	}
	return p
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + roundDuration(-d).String()
	}
	return roundDuration(d).String() + " ago"
}

var roundDuration = app.RoundDuration
