// Package servers finds the real database and broker servers that adapter
// tests run against, and tears down the ones it started.
//
// Each backend package (pgserver, mysqlserver, mongoserver, kafkaserver,
// natsserver) looks for a server in this order, once per test binary:
//
//  1. an explicit address in the environment: OUTBOX_TEST_POSTGRES_URL,
//     OUTBOX_TEST_MYSQL_URL, OUTBOX_TEST_MONGO_URL, OUTBOX_TEST_KAFKA_BROKERS
//     (a comma-separated host:port list) or OUTBOX_TEST_NATS_URL;
//  2. a throwaway local server started from binaries installed on the
//     machine, in a temporary directory, on a free 127.0.0.1 port;
//  3. a throwaway container, through dockertest, where a Docker daemon
//     answers;
//  4. otherwise the test skips with a one-line reason naming the variable to
//     set, unless OUTBOX_TEST_REQUIRE names the backend (a comma- or
//     space-separated list of postgres, mysql, mongo, kafka, nats, or "all"),
//     in which case it fails with the same line. CI sets it, so a missing
//     server cannot pass as a skip there.
//
// Throwaway servers live as long as the test binary: a package whose tests use
// them declares
//
//	func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }
//
// and Main stops every process and container started in the process once the
// tests are done. Local processes also die with the test binary if it is
// killed (on Linux), and containers remove themselves after the test timeout
// if nothing purged them.
//
// Tests isolate themselves on a shared server with Name: every test gets its
// own schema, database, topic or stream, so tests run in parallel and several
// test binaries can share one server.
//
// The rest of this package is the toolkit the backend packages share:
// Finder (the discovery order above), StartProcess and RunCommand (local
// binaries), and Docker, RunContainer and WaitContainer (containers).
package servers
