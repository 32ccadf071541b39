// Package testenv gives the examples' tests the servers they run against:
// a database, a Kafka topic or a NATS stream of each test's own, on the
// servers that package servers finds (the OUTBOX_TEST_* variables, local
// binaries, Docker). Without one a test skips, or fails under
// OUTBOX_TEST_REQUIRE.
//
// Only tests import it: the example programs read their configuration from
// the environment, as a service would, so that they can be copied as they
// are.
package testenv

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
)

// PostgresURL creates a PostgreSQL database for t alone, dropped when t
// ends, and returns a URL of it. The examples use the public schema and
// unqualified names, as most services do; a database of their own keeps
// them apart.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := pgserver.URL(t)
	name := servers.Name(t, "examples")
	ident := pgx.Identifier{name}.Sanitize()
	if err := pgExec(base, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := pgExec(base, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return base + " dbname=" + name
}

func pgExec(connString, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// MySQLDSN creates a MySQL/MariaDB database for t alone, dropped when t
// ends, and returns a go-sql-driver DSN of it (parseTime=true).
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn, _ := mysqlserver.Database(t)
	return dsn
}

// Kafka returns the seed brokers of a real Kafka cluster and a topic of t's
// own (one partition), deleted when t ends.
func Kafka(t testing.TB) (brokers []string, topic string) {
	t.Helper()
	brokers = kafkaserver.Brokers(t)
	return brokers, kafkaserver.Topic(t, brokers, 1)
}

// NATS returns the URL of a NATS server with JetStream, and a stream of t's
// own, deleted when t ends, with a subject it captures.
func NATS(t testing.TB) (url, stream, subject string) {
	t.Helper()
	url = natsserver.URL(t)
	stream, prefix := natsserver.Stream(t, url)
	return url, stream, prefix + ".orders.placed"
}

// Mongo returns the URL of a MongoDB server and a database of t's own,
// dropped when t ends.
func Mongo(t testing.TB) (url, database string) {
	t.Helper()
	return mongoserver.Database(t)
}
