package ui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Options are the console's flags, the same for `outbox ui` and, with a
// "ui-" prefix, for `outbox relay`.
type Options struct {
	// Addr is the listening address; empty serves nothing.
	Addr string
	// Token and BasicAuth ("user:password") are the credentials a request
	// must carry; at most one of them.
	Token     string
	BasicAuth string
	// ReadOnly hides and refuses replay and purge.
	ReadOnly bool
	// Insecure allows a non-loopback address without credentials.
	Insecure bool
}

// AddFlags binds the options to flags named prefix+"addr" and so on.
func (o *Options) AddFlags(fs *pflag.FlagSet, prefix, defaultAddr string) {
	what := "serve the operator's console (overview, where is my event?, dead letters) on this address"
	if defaultAddr == "" {
		what += "; empty serves nothing"
	}
	fs.StringVar(&o.Addr, prefix+"addr", defaultAddr, what+"; an address beyond loopback needs --"+prefix+"token or --"+prefix+"basic-auth")
	fs.StringVar(&o.Token, prefix+"token", "", "require this token of the console's visitors (open /?token=… once; scripts send Authorization: Bearer …)")
	fs.StringVar(&o.BasicAuth, prefix+"basic-auth", "", "require HTTP basic authentication as user:password of the console's visitors")
	fs.BoolVar(&o.ReadOnly, prefix+"read-only", false, "console without replay and purge")
	fs.BoolVar(&o.Insecure, prefix+"insecure", false, "allow a console address beyond loopback without a token or basic authentication")
}

// Auth returns the credentials the options ask for.
func (o Options) Auth() (Auth, error) {
	a := Auth{Token: o.Token}
	if o.BasicAuth != "" {
		user, pass, ok := strings.Cut(o.BasicAuth, ":")
		if !ok || user == "" || pass == "" {
			return Auth{}, errors.New("basic auth: give it as user:password")
		}
		a.User, a.Password = user, pass
	}
	if a.Token != "" && a.User != "" {
		return Auth{}, errors.New("give a token or basic auth, not both")
	}
	return a, nil
}

// CheckAddr refuses to serve beyond loopback without credentials unless
// insecure is set.
func CheckAddr(addr string, auth Auth, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: give host:port, e.g. 127.0.0.1:8089", addr)
	}
	if auth.Enabled() || insecure || isLoopback(host) {
		return nil
	}
	where := host
	if where == "" {
		where = "every interface"
	}
	return fmt.Errorf("%q listens on %s, beyond loopback, where anyone who reaches it could replay and purge dead letters: require a token or basic auth, or serve on 127.0.0.1 and reach it through an SSH tunnel (or pass --insecure, --ui-insecure on the relay, if something in front authenticates)", addr, where)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve checks the address, listens, and serves the console and its
// sampler until the returned stop function is called. It returns the
// address it listens on (with the port chosen when Addr asked for 0).
func Serve(ctx context.Context, addr string, s *Server) (stop func(), bound net.Addr, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s.Run(ctx)
	}()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("outbox ui: the console's server failed", slog.Any("error", err))
		}
	}()
	mode := "read-write"
	if s.cfg.ReadOnly {
		mode = "read-only"
	}
	s.log.Info("outbox ui: serving the console", slog.String("url", "http://"+ln.Addr().String()+"/"), slog.String("mode", mode),
		slog.Bool("auth", s.cfg.Auth.Enabled()))
	return func() {
		cancel()
		sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Shutdown(sctx)
		<-served
		<-sampled
	}, ln.Addr(), nil
}
