package backend

import (
	"net"
	"slices"
	"strconv"
	"strings"
)

// Target describes the server behind a store or broker URL in the terms an
// operator uses to fix it: which system, where, as which user, which
// database and table. Error messages are built from it (package app).
type Target struct {
	// System is "PostgreSQL", "MySQL", "MongoDB", "SQLite", "Kafka" or
	// "NATS".
	System string
	// Addr is host:port, several joined by commas; the socket path of a
	// Unix socket; the database file of SQLite.
	Addr string
	// User is the user the URL names, "" when it names none.
	User string
	// Database is the database the URL names (PostgreSQL, MySQL, MongoDB).
	Database string
	// Table is the outbox table (MongoDB: collection) as the store names
	// it: "public.outbox", "outbox".
	Table string
	// TableKind is "table" or "collection".
	TableKind string
	// URL is the URL as given, secrets hidden.
	URL string
}

// Systems, as [Target.System] names them.
const (
	systemPostgres = "PostgreSQL"
	systemMySQL    = "MySQL"
	systemMongoDB  = "MongoDB"
	systemSQLite   = "SQLite"
	systemKafka    = "Kafka"
	systemNATS     = "NATS"
)

// joinAddrs joins host:port pairs, dropping repeats.
func joinAddrs(addrs []string) string {
	var out []string
	for _, a := range addrs {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return strings.Join(out, ",")
}

// hostPort joins a host and a port; a host that is a socket directory or
// path stays as it is.
func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// urlHosts returns the host list of a URL that may name several hosts
// (mongodb://a:1,b:2/db, kafka://k1:9092,k2:9092, nats://a,nats://b): the
// part between the scheme (and credentials) and the path or query of each
// URL in raw.
func urlHosts(raw string) []string {
	var hosts []string
	for part := range strings.SplitSeq(raw, ",") {
		if _, rest, ok := strings.Cut(part, "://"); ok {
			part = rest
		}
		if i := strings.IndexAny(part, "/?"); i >= 0 {
			part = part[:i]
		}
		if at := strings.LastIndex(part, "@"); at >= 0 {
			part = part[at+1:]
		}
		if part != "" {
			hosts = append(hosts, part)
		}
	}
	return hosts
}

// IsBroker reports whether t is a broker (Kafka, NATS) rather than a store.
func (t Target) IsBroker() bool { return t.System == systemKafka || t.System == systemNATS }

// TargetError is a failure of the server a store or broker URL points at,
// met while opening it, with the [Target] it concerns. (Failures met later
// come from the adapters as they are; the caller knows the Target from the
// opened [Store] or [Broker].)
type TargetError struct {
	Target Target
	Err    error
}

func (e *TargetError) Error() string { return e.Err.Error() }

// Unwrap returns the failure.
func (e *TargetError) Unwrap() error { return e.Err }
