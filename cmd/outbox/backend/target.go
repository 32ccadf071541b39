package backend

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Target describes the server behind a store or broker URL in the terms an
// operator uses to fix it: which system, where, as which user, which
// database and table. Error messages are built from it (package app).
type Target struct {
	// System is "PostgreSQL", "MySQL or MariaDB", "MongoDB", "SQLite",
	// "Kafka" or "NATS": what the URL says. [Target.AskName] and
	// [Target.KnownName] tell MariaDB from MySQL once the server answered.
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

	// server asks the server its name, for a URL that does not tell
	// (mysql:// serves MySQL and MariaDB alike); nil when System says it.
	server *serverName
}

// Systems, as [Target.System] names them.
const (
	systemPostgres = "PostgreSQL"
	systemMySQL    = "MySQL or MariaDB" // until the server says which
	systemMongoDB  = "MongoDB"
	systemSQLite   = "SQLite"
	systemKafka    = "Kafka"
	systemNATS     = "NATS"
)

// serverName asks a server for its name, and remembers the answer.
type serverName struct {
	// ask returns the server's name and version ("MariaDB 10.11.6"). It
	// fails at once with a context that has ended.
	ask   func(ctx context.Context) (string, error)
	known atomic.Pointer[string]
}

func (n *serverName) get(ctx context.Context) (string, error) {
	if known := n.known.Load(); known != nil {
		return *known, nil
	}
	name, err := n.ask(ctx)
	if err != nil {
		return "", err
	}
	n.known.Store(&name)
	return name, nil
}

// AskName names the server as it names itself: "MariaDB" or "MySQL" for a
// mysql:// URL (VERSION() says which), asking the server within a second
// if it has not said yet; System for the others, or when the server does
// not answer the question (it refuses the user, say).
func (t Target) AskName() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return t.name(ctx)
}

// KnownName is [Target.AskName] without asking: what the server said
// earlier, or System. It is for a server that does not answer.
func (t Target) KnownName() string {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return t.name(ctx)
}

func (t Target) name(ctx context.Context) string {
	if t.server == nil {
		return t.System
	}
	name, err := t.server.get(ctx)
	if err != nil {
		return t.System
	}
	family, _, _ := strings.Cut(name, " ") // without the version
	return family
}

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
