package natspub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Connection says how [Connect] reaches NATS. Only URL is required; set at
// most one of CredsFile, NKeySeedFile, Token, and User/Password (or put the
// user and password, or a token, in the URL).
type Connection struct {
	// URL is the server, nats://host:4222 (tls://, ws:// and wss:// work
	// too), or several separated by commas. It may carry user:password@
	// or token@.
	URL string
	// Name is the client name the server shows. Default "txoutbox".
	Name string

	// CredsFile is a user credentials file (JWT and NKey seed), as nsc
	// and NGS hand out.
	CredsFile string
	// NKeySeedFile is a file holding a user NKey seed (SU...).
	NKeySeedFile string
	// Token is an authentication token.
	Token string
	// User and Password authenticate with a user name and password.
	User, Password string

	// TLSCAFile is a PEM file of the authorities that sign the server's
	// certificate, when the system's roots do not.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and its key, for
	// servers that verify clients.
	TLSCertFile, TLSKeyFile string
	// TLSConfig, when set, is the TLS configuration; the TLS files above
	// are applied on top of it.
	TLSConfig *tls.Config

	// Options are applied after the ones Connect derives from the fields
	// above, for anything else nats.go offers (nats.ReconnectWait, ...).
	Options []nats.Option
}

// Defaults of Connection.
const DefaultClientName = "txoutbox"

// Connect opens a connection to NATS and returns a Publisher that owns it:
// Close closes it. The connection reconnects forever, also after a refused
// login, and when no server answers at first Connect still returns: Publish then reports
// [outbox.ErrUnavailable] (the relay pauses and retries) until a server
// answers. Connect fails for invalid settings (matching
// [outbox.ErrInvalidConfig]) and, when a server answers within ctx, for an
// account without JetStream ([outbox.ErrUnsupported]).
//
// The JetStream context Connect makes keeps twice MaxInFlight acknowledgements
// pending and expires them after AckTimeout. Connection losses and
// recoveries are logged to cfg.Logger.
func Connect(ctx context.Context, conn Connection, cfg Config) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts, err := conn.options(cfg.Logger)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(conn.URL, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrNoServers) {
			return nil, fmt.Errorf("natspub: connect to %s: %w: %w", redact(conn.URL), outbox.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("%w: natspub: connect to %s: %w", outbox.ErrInvalidConfig, redact(conn.URL), err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(2*cfg.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natspub: %w", err)
	}
	if nc.IsConnected() {
		// Only a definite "no JetStream" fails here: an account may be
		// allowed to publish without being allowed the JetStream API.
		_, err := js.AccountInfo(ctx)
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			nc.Close()
			return nil, fmt.Errorf("natspub: connect to %s: %w: %w", redact(conn.URL), outbox.ErrUnsupported, err)
		}
	}
	p := newPublisher(js, cfg)
	p.owned = nc
	return p, nil
}

// validate reports what is wrong with c without touching any file.
func (c Connection) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: natspub: Connection.%s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(c.URL) == "" {
		return bad("URL is empty; set it to nats://host:4222")
	}
	var auth []string
	for name, set := range map[string]bool{
		"CredsFile": c.CredsFile != "", "NKeySeedFile": c.NKeySeedFile != "", "Token": c.Token != "",
		"User": c.User != "" || c.Password != "",
	} {
		if set {
			auth = append(auth, name)
		}
	}
	if len(auth) > 1 {
		slices.Sort(auth)
		return bad("%s are all set; use one way to authenticate", strings.Join(auth, ", "))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return bad("TLSCertFile and TLSKeyFile go together; set both or neither")
	}
	return nil
}

// options turns c into nats.go options, or reports what is wrong with it.
func (c Connection) options(log *slog.Logger) ([]nats.Option, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	name := c.Name
	if name == "" {
		name = DefaultClientName
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(), // credentials fixed on the server side are picked up
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("natspub: disconnected from NATS; reconnecting", slog.Any("error", err))
			}
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("natspub: connected to NATS", slog.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("natspub: reconnected to NATS", slog.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("natspub: NATS reported an error", slog.Any("error", err))
		}),
	}
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: natspub: Connection.NKeySeedFile: %w", outbox.ErrInvalidConfig, err)
		}
		opts = append(opts, opt)
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.User != "" || c.Password != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.TLSConfig != nil {
		opts = append(opts, nats.Secure(c.TLSConfig.Clone()))
	}
	if c.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLSCAFile))
	}
	if c.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLSCertFile, c.TLSKeyFile))
	}
	return append(opts, c.Options...), nil
}

// URL parameters ParseURL understands, with what they set.
var urlParams = map[string]string{
	"creds":          "Connection.CredsFile",
	"nkey":           "Connection.NKeySeedFile",
	"token":          "Connection.Token",
	"tls_ca":         "Connection.TLSCAFile",
	"tls_cert":       "Connection.TLSCertFile",
	"tls_key":        "Connection.TLSKeyFile",
	"name":           "Connection.Name",
	"subject":        "Config.Subject (SubjectTemplate)",
	"subject_prefix": "Config.Subject (SubjectPrefix)",
	"max_in_flight":  "Config.MaxInFlight",
	"ack_timeout":    "Config.AckTimeout",
	"create_streams": "Config.CreateStreams",

	"cloudevents_source":      "Config.CloudEvents.Source",
	"cloudevents_type_header": "Config.CloudEvents.TypeHeader",
}

// ParseURL reads a broker URL as the outbox command line takes it, for
// [Connect]:
//
//	nats://[user:password@|token@]host[:port][,nats://host2:port...][?param=value&...]
//
// Parameters: creds (a credentials file), nkey (an NKey seed file), token,
// tls_ca, tls_cert and tls_key (PEM files), name (the client name),
// subject (a template such as {topic}.{key}, see [SubjectTemplate]) or
// subject_prefix (see [SubjectPrefix]), max_in_flight (an integer),
// ack_timeout (a Go duration such as 10s), create_streams (a boolean), and
// cloudevents_source and cloudevents_type_header (see [CloudEvents]).
// The query string follows the last server. An unknown parameter is an
// error matching [outbox.ErrInvalidConfig], so that a typo is not ignored.
func ParseURL(rawURL string) (Connection, Config, error) {
	var conn Connection
	var cfg Config
	bad := func(format string, args ...any) (Connection, Config, error) {
		return Connection{}, Config{}, fmt.Errorf("%w: natspub: URL %s: %s", outbox.ErrInvalidConfig, redact(rawURL), fmt.Sprintf(format, args...))
	}
	serverList, query, _ := strings.Cut(strings.TrimSpace(rawURL), "?")
	if serverList == "" {
		return bad("no server; use nats://host:4222")
	}
	for s := range strings.SplitSeq(serverList, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return bad("%q is not a URL", redact(s))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return bad("scheme %q: use nats://, tls://, ws:// or wss://", u.Scheme)
		}
		if u.Host == "" {
			return bad("%q has no host", redact(s))
		}
		if u.Path != "" && u.Path != "/" && u.Scheme != "ws" && u.Scheme != "wss" {
			return bad("%q has a path; only ws:// and wss:// URLs take one", redact(s))
		}
	}
	conn.URL = serverList
	values, err := url.ParseQuery(query)
	if err != nil {
		return bad("query: %v", err)
	}
	for name, vals := range values {
		if _, ok := urlParams[name]; !ok {
			known := make([]string, 0, len(urlParams))
			for k := range urlParams {
				known = append(known, k)
			}
			slices.Sort(known)
			return bad("unknown parameter %q; known ones are %s", name, strings.Join(known, ", "))
		}
		if len(vals) != 1 {
			return bad("parameter %q is given %d times", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "creds":
			conn.CredsFile = v
		case "nkey":
			conn.NKeySeedFile = v
		case "token":
			conn.Token = v
		case "tls_ca":
			conn.TLSCAFile = v
		case "tls_cert":
			conn.TLSCertFile = v
		case "tls_key":
			conn.TLSKeyFile = v
		case "name":
			conn.Name = v
		case "subject":
			t, err := parseSubjectTemplate(v)
			if err != nil {
				return bad("subject=%q: %v", v, err)
			}
			cfg.Subject = t.subject
		case "subject_prefix":
			if why := checkSubject(strings.TrimSuffix(v, ".")); v != "" && why != "" {
				return bad("subject_prefix: %s", why)
			}
			cfg.Subject = SubjectPrefix(v)
		case "max_in_flight":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return bad("max_in_flight=%q: want a positive integer", v)
			}
			cfg.MaxInFlight = n
		case "ack_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("ack_timeout=%q: want a positive duration such as 10s", v)
			}
			cfg.AckTimeout = d
		case "create_streams":
			on, err := strconv.ParseBool(v)
			if err != nil {
				return bad("create_streams=%q: want true or false", v)
			}
			cfg.CreateStreams = on
		case "cloudevents_source":
			cfg.CloudEvents.Source = v
		case "cloudevents_type_header":
			cfg.CloudEvents.TypeHeader = v
		}
	}
	if ce := cfg.CloudEvents; ce.TypeHeader != "" && ce.Source == "" {
		return bad("cloudevents_type_header is given without cloudevents_source, which turns CloudEvents headers on (a URI such as urn:app:orders)")
	} else if why := checkSource(ce.Source); ce.Source != "" && why != "" {
		return bad("cloudevents_source=%q %s", ce.Source, why)
	}
	if values.Has("subject") && values.Has("subject_prefix") {
		return bad("subject and subject_prefix are both given; put the prefix in the template (subject=prod.{topic}.{key})")
	}
	if err := conn.validate(); err != nil {
		return Connection{}, Config{}, err
	}
	return conn, cfg, nil
}

// redact hides passwords and tokens of server URLs in messages.
func redact(servers string) string {
	parts := strings.Split(servers, ",")
	for i, s := range parts {
		s, _, _ = strings.Cut(s, "?")
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
			u.User = url.User("REDACTED")
			s = u.String()
		}
		parts[i] = s
	}
	return strings.Join(parts, ",")
}
