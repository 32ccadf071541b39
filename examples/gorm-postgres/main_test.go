package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/examples/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

// The program runs end to end against real servers: the order and its
// event commit together, and the event arrives on the topic.
func TestRun(t *testing.T) {
	databaseURL := testenv.PostgresURL(t)
	brokers, topic := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, config{DatabaseURL: databaseURL, KafkaBrokers: brokers, Topic: topic}, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "received from Kafka topic "+topic) || !strings.Contains(out.String(), `"customer":"ada"`) {
		t.Fatalf("output does not show the event received:\n%s", out.String())
	}
}
