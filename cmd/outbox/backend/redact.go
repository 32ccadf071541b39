package backend

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// redacted replaces secrets in what the CLI prints.
const redacted = "xxxxx"

// secretParams are query parameters whose values are secrets.
var secretParams = map[string]bool{
	"password": true, "pass": true, "passwd": true, "pwd": true,
	"token": true, "secret": true, "sasl_password": true,
	"tlskeypassword": true, "sslpassword": true,
}

// Redact returns a URL or DSN with its password, and the values of query
// parameters that hold secrets (password, token, ...), replaced by xxxxx.
// It works on the text, so it also handles URLs that net/url refuses
// (several hosts, a DSN).
func Redact(raw string) string {
	if strings.Count(raw, "://") > 1 { // nats://a:pw@h1,nats://a:pw@h2
		parts := strings.Split(raw, ",")
		for i, p := range parts {
			parts[i] = Redact(p)
		}
		return strings.Join(parts, ",")
	}
	s := raw
	// user:password@ in the authority, or at the start of a DSN.
	authStart := 0
	if i := strings.Index(s, "://"); i >= 0 {
		authStart = i + 3
	}
	authEnd := len(s)
	if i := strings.IndexAny(s[authStart:], "/?"); i >= 0 && !strings.Contains(s[authStart:], "@tcp(") && !strings.Contains(s[authStart:], "@unix(") {
		authEnd = authStart + i
	}
	if at := strings.LastIndex(s[authStart:authEnd], "@"); at >= 0 {
		at += authStart
		if colon := strings.Index(s[authStart:at], ":"); colon >= 0 {
			colon += authStart
			s = s[:colon+1] + redacted + s[at:]
		} else if authStart > 0 && strings.HasPrefix(strings.ToLower(s), "nats") {
			s = s[:authStart] + redacted + s[at:] // nats://token@host
		}
	}
	// Secret query parameters.
	base, query, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	parts := strings.Split(query, "&")
	for i, kv := range parts {
		k, _, hasValue := strings.Cut(kv, "=")
		if hasValue && secretParams[strings.ToLower(k)] {
			parts[i] = k + "=" + redacted
		}
	}
	return base + "?" + strings.Join(parts, "&")
}

// errorWithoutSecret returns err with every occurrence of raw's password
// replaced, for driver errors that quote the URL they could not parse.
func errorWithoutSecret(err error, raw string) error {
	msg := err.Error()
	for _, secret := range secretsOf(raw) {
		if len(secret) >= 3 {
			msg = strings.ReplaceAll(msg, secret, redacted)
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// secretsOf returns the password and secret parameter values of raw.
func secretsOf(raw string) []string {
	var out []string
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
			out = append(out, pw)
		}
	}
	if _, query, ok := strings.Cut(raw, "?"); ok {
		for kv := range strings.SplitSeq(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if secretParams[strings.ToLower(k)] && v != "" {
				out = append(out, v)
				if un, err := url.QueryUnescape(v); err == nil {
					out = append(out, un)
				}
			}
		}
	}
	return out
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
