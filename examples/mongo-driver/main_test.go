package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/examples/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

// The program runs end to end against real servers: the order and its
// event commit together, and the event arrives on the stream. On a server
// without transactions (FerretDB, a standalone mongod) it must stop before
// writing anything, saying what it needs; the rest is then skipped.
func TestRun(t *testing.T) {
	mongoURL, database := testenv.Mongo(t)
	natsURL, stream, subject := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	err := run(ctx, config{MongoURI: mongoURL, Database: database, NATSURL: natsURL, Stream: stream, Subject: subject}, &out)
	if errors.Is(err, errNoTransactions) {
		if out.Len() > 0 {
			t.Fatalf("without transactions, run wrote:\n%s", out.String())
		}
		t.Skipf("the order and its event need a transaction, which this server does not have: %v", err)
	}
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "received from NATS subject "+subject) || !strings.Contains(out.String(), `"customer":"ada"`) {
		t.Fatalf("output does not show the event received:\n%s", out.String())
	}
}
