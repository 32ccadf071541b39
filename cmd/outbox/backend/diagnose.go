package backend

import (
	"errors"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
)

// ServerSays returns what the server itself said in err, in its own words
// and without codes or driver prefixes — `role "app" does not exist`,
// `Unknown database 'app'`, `SASL_AUTHENTICATION_FAILED` — or "" when err
// holds no server answer.
func ServerSays(err error) string {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Message
	}
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok {
		return me.Message
	}
	if ce, ok := errors.AsType[mongo.CommandError](err); ok && ce.Message != "" {
		return strings.TrimSpace(firstLine(ce.Message))
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return ke.Message
	}
	for _, ne := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired, nats.ErrPermissionViolation} {
		if errors.Is(err, ne) {
			return strings.TrimPrefix(ne.Error(), "nats: ")
		}
	}
	return ""
}

// NetworkSays returns why a connection failed at the network level —
// "connection refused", "no such host", "i/o timeout" — or "" when err
// holds no network error.
func NetworkSays(err error) string {
	if de, ok := errors.AsType[*net.DNSError](err); ok {
		if de.IsNotFound {
			return "no such host " + de.Name
		}
		return de.Err
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Err != nil {
		msg := oe.Err.Error()
		if _, after, ok := strings.Cut(msg, ": "); ok && (strings.HasPrefix(msg, "connect:") || strings.HasPrefix(msg, "read:") || strings.HasPrefix(msg, "write:")) {
			msg = after
		}
		return msg
	}
	return ""
}

// LoginRefused reports whether err is a refusal of the credentials
// themselves (an unknown user, a wrong password, a failed SASL or NATS
// authentication), as opposed to a privilege the user lacks.
func LoginRefused(err error) bool {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return strings.HasPrefix(pe.Code, "28")
	}
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok {
		return me.Number == 1045 || me.Number == 1698
	}
	if _, ok := errors.AsType[*auth.Error](err); ok {
		return true
	}
	if ce, ok := errors.AsType[mongo.CommandError](err); ok {
		return ce.Code == 18 // AuthenticationFailed
	}
	for _, e := range []error{kerr.SaslAuthenticationFailed, kerr.IllegalSaslState, kerr.UnsupportedSaslMechanism,
		nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
