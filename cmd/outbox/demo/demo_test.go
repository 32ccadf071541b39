package demo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/cli"
	"github.com/txoutbox/txoutbox/cmd/outbox/demo"
	"github.com/txoutbox/txoutbox/conformance/servers"
)

// relayProcessEnv makes this test binary the outbox command: the demo's
// chaos runs start relay processes by executing it with `relay ...`.
const relayProcessEnv = "TXOUTBOX_DEMO_TEST_AS_OUTBOX"

func TestMain(m *testing.M) {
	if os.Getenv(relayProcessEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	// Every process this binary starts as itself (the relays of
	// `outbox demo --chaos`, which executes os.Executable()) runs the CLI.
	if err := os.Setenv(relayProcessEnv, "1"); err != nil {
		panic(err)
	}
	os.Exit(servers.Main(m))
}

// relayProcess runs `outbox relay` as this test binary.
func relayProcess(t *testing.T) func(args []string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(args []string) *exec.Cmd { return exec.Command(exe, args...) }
}

// quick is a short demo for tests: 2s at 100 events/s, a 1s lease.
func quick(t *testing.T, broker string) demo.Config {
	return demo.Config{
		Broker:        broker,
		Duration:      2 * time.Second,
		Rate:          100,
		Keys:          8,
		Lease:         time.Second,
		ProgressEvery: 500 * time.Millisecond,
		TempDir:       t.TempDir(),
	}
}

// run runs cfg and fails t unless the verdict is clean and the temporary
// directory is gone. It returns the verdict and the output.
func run(t *testing.T, ctx context.Context, cfg demo.Config) (demo.Verdict, string) {
	t.Helper()
	var out bytes.Buffer
	v, err := demo.Run(ctx, cfg, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !v.Clean() {
		t.Fatalf("verdict not clean: %s\n%s", v.Report, out.String())
	}
	if strings.Contains(out.String(), "warning:") {
		t.Errorf("the demo warned:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "\nCLEAN: nothing lost") {
		t.Fatalf("the output does not end with the clean verdict:\n%s", out.String())
	}
	leftovers(t, cfg.TempDir)
	return v, out.String()
}

// leftovers fails t when the demo left anything in dir.
func leftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("the demo left %s in its temporary directory's parent", e.Name())
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestEmbedded runs the default demo, on embedded SQLite with an embedded
// NATS server or kfake, plain and with chaos (relay processes killed with
// SIGKILL, or relays in this process whose crash is simulated).
func TestEmbedded(t *testing.T) {
	for _, broker := range []string{demo.EmbeddedNATS, demo.EmbeddedKafka} {
		t.Run(broker, func(t *testing.T) {
			t.Parallel()
			v, out := run(t, testContext(t), quick(t, broker))
			if v.RelayStarts != 1 || v.RelayKills != 0 {
				t.Errorf("relays started %d, killed %d; want 1 and 0\n%s", v.RelayStarts, v.RelayKills, out)
			}
		})
		for _, processes := range []bool{true, false} {
			name := broker + "/chaos"
			if !processes {
				name += "-in-process"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				cfg := quick(t, broker)
				cfg.Duration = 3 * time.Second
				cfg.Chaos, cfg.Kills = true, 2
				if processes {
					cfg.RelayCommand = relayProcess(t)
				}
				v, out := run(t, testContext(t), cfg)
				if v.RelayKills != 2 || v.RelayStarts != 3 {
					t.Errorf("relays killed %d, started %d; want 2 and 3\n%s", v.RelayKills, v.RelayStarts, out)
				}
				if v.RelayCrashes != 0 {
					t.Errorf("%d relays exited by themselves\n%s", v.RelayCrashes, out)
				}
				if processes && !strings.Contains(out, "SIGKILL") {
					t.Errorf("the header does not say that relay processes are killed:\n%s", out)
				}
			})
		}
	}
}
