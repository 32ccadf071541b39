package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

var (
	pgTarget    = backend.Target{System: "PostgreSQL", Addr: "db:5432", User: "app", Database: "shop", Table: "public.outbox", TableKind: "table"}
	mongoTarget = backend.Target{System: "MongoDB", Addr: "m1:27017,m2:27017", User: "app", Database: "shop", Table: "outbox", TableKind: "collection"}
	kafkaTarget = backend.Target{System: "Kafka", Addr: "k1:9092,k2:9092", User: "relay"}
	natsTarget  = backend.Target{System: "NATS", Addr: "n1:4222"}
)

// TestProblem: the failures adapters report as they would report them (the
// sentinel and the driver's error), explained for each kind of server.
// These are the cases the servers of the test machine cannot produce: a
// missing privilege, a server too busy to serve, brokers refusing the
// credentials. cli's TestFailuresNameTheFix covers the others for real.
func TestProblem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target backend.Target
		err    error
		want   string
	}{
		{"postgres privilege", pgTarget,
			fmt.Errorf("pgstore: stats: %w: %w", outbox.ErrAccessDenied, &pgconn.PgError{Code: "42501", Message: "permission denied for table outbox"}),
			`PostgreSQL at db:5432 denied user "app" access (permission denied for table outbox): grant the user access to the outbox table public.outbox in database "shop" (migrate also creates it), or use another user in --store (or OUTBOX_STORE_URL)`},
		{"postgres password", pgTarget,
			fmt.Errorf("pgstore: stats: %w: %w", outbox.ErrAccessDenied, &pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "app"`}),
			`PostgreSQL at db:5432 refused user "app" (password authentication failed for user "app"): check the user and password in --store (or OUTBOX_STORE_URL)`},
		{"postgres too busy", pgTarget,
			&app.GaveUpError{What: "read", Attempts: 3, Elapsed: 2 * time.Second, Wait: 2 * time.Second,
				Err: fmt.Errorf("pgstore: stats: %w: %w", outbox.ErrUnavailable, &pgconn.PgError{Code: "53300", Message: "sorry, too many clients already"})},
			`PostgreSQL at db:5432 cannot serve now (sorry, too many clients already); gave up after 3 attempts in 2s (--wait 2s): try again later, or allow longer with --wait`},
		{"mysql privilege", backend.Target{System: "MySQL", Addr: "db:3306", User: "app", Database: "shop", Table: "outbox", TableKind: "table"},
			fmt.Errorf("mysqlstore: stats: %w: %w", outbox.ErrAccessDenied, &mysql.MySQLError{Number: 1142, Message: "SELECT command denied to user 'app'@'10.0.0.1' for table `shop`.`outbox`"}),
			`MySQL at db:3306 denied user "app" access (SELECT command denied to user 'app'@'10.0.0.1' for table ` + "`shop`.`outbox`" + `): grant the user access`},
		{"mongo privilege", mongoTarget,
			fmt.Errorf("mongostore: claim: %w: %w", outbox.ErrAccessDenied, mongo.CommandError{Code: 13, Message: "not authorized on shop to execute command"}),
			`MongoDB at m1:27017,m2:27017 denied user "app" access (not authorized on shop to execute command): grant the user access to the outbox collection outbox in database "shop"`},
		{"mongo unreachable", mongoTarget,
			fmt.Errorf("mongostore: ping: %w: server selection error: context deadline exceeded", outbox.ErrUnavailable),
			`nothing answers at m1:27017,m2:27017 (MongoDB): check the host and port in --store (or OUTBOX_STORE_URL), and that the server is running`},
		{"kafka SASL", kafkaTarget,
			fmt.Errorf("%w: %w: kafkapub: ping: %w", outbox.ErrUnavailable, outbox.ErrAccessDenied, kerr.SaslAuthenticationFailed),
			`Kafka at k1:9092,k2:9092 refused the credentials of user "relay" (SASL_AUTHENTICATION_FAILED): check the user, password and sasl mechanism in --broker (or OUTBOX_BROKER_URL)`},
		{"kafka cluster ACL", kafkaTarget,
			fmt.Errorf("%w: %w: kafkapub: topic %q: %w", outbox.ErrUnavailable, outbox.ErrAccessDenied, "orders", kerr.ClusterAuthorizationFailed),
			`Kafka at k1:9092,k2:9092 refused user "relay" a permission (CLUSTER_AUTHORIZATION_FAILED): grant it WRITE on the topics and IDEMPOTENT_WRITE on the cluster`},
		{"nats authorization", natsTarget,
			fmt.Errorf("natspub: ping: %w: %w: the NATS connection is RECONNECTING: %w", outbox.ErrUnavailable, outbox.ErrAccessDenied, nats.ErrAuthorization),
			`NATS at n1:4222 refused the credentials (authorization violation): check the user and password, token, creds or nkey in --broker (or OUTBOX_BROKER_URL)`},
		{"not one of them", pgTarget, errors.New("pgstore: stats: syntax error"), ""},
		{"no schema on a broker", natsTarget, fmt.Errorf("x: %w", outbox.ErrSchemaMissing), ""},
	}
	a := app.New(strings.NewReader(""), new(bytes.Buffer), new(bytes.Buffer))
	for _, tt := range tests {
		got := a.Problem(tt.target, tt.err)
		if (tt.want == "" && got != "") || !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

// TestExplainDropsThePrefix: an error the CLI cannot explain is printed as
// it is, without the "outbox: " that core errors start with (the CLI puts
// its own).
func TestExplainDropsThePrefix(t *testing.T) {
	t.Parallel()
	a := app.New(strings.NewReader(""), new(bytes.Buffer), new(bytes.Buffer))
	err := fmt.Errorf("%w: no dead letter has the ID %q", outbox.ErrNotFound, "x")
	if got, want := a.Explain(err), `not found: no dead letter has the ID "x"`; got != want {
		t.Errorf("Explain = %q, want %q", got, want)
	}
}

// TestRetryStopsAtARefusal: Retry gives up at once on a refusal that no
// retry can cure, even from a broker whose error also matches
// ErrUnavailable; it retries an outage until --wait.
func TestRetryStopsAtARefusal(t *testing.T) {
	t.Parallel()
	a := app.New(strings.NewReader(""), new(bytes.Buffer), new(bytes.Buffer))
	for _, err := range []error{
		fmt.Errorf("%w: %w: SASL", outbox.ErrUnavailable, outbox.ErrAccessDenied),
		fmt.Errorf("x: %w", outbox.ErrDatabaseMissing),
		fmt.Errorf("x: %w", outbox.ErrSchemaMissing),
	} {
		calls := 0
		got := a.Retry(context.Background(), "read", time.Hour, func(context.Context) error { calls++; return err })
		if calls != 1 || got != err {
			t.Errorf("Retry of %v: %d calls, returned %v; want 1 call and the error as it is", err, calls, got)
		}
	}
	calls := 0
	down := fmt.Errorf("x: %w", outbox.ErrUnavailable)
	got := a.Retry(context.Background(), "read", time.Millisecond, func(context.Context) error { calls++; return down })
	if g, ok := errors.AsType[*app.GaveUpError](got); !ok || g.Attempts != calls || !errors.Is(got, down) {
		t.Errorf("Retry of an outage returned %v after %d calls; want a GaveUpError that counts them and wraps the error", got, calls)
	}
}
