package demo_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/cli"
	"github.com/txoutbox/txoutbox/cmd/outbox/demo"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/conformance/ledger"
)

// outboxRun runs the outbox command in this process with env as its whole
// environment and returns its exit code, stdout and stderr.
func outboxRun(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := app.New(strings.NewReader(""), &stdout, &stderr)
	a.Getenv = func(name string) string { return env[name] }
	a.IsTerminal = func(any) bool { return false }
	code := cli.Run(testContext(t), a, args)
	return code, stdout.String(), stderr.String()
}

// TestCommandExitCodes checks `outbox demo` end to end in this process: exit
// code 0 for a clean verdict, 1 for one that is not, 2 for a mistake in the
// flags; and that the environment of the real relay does not reach it.
func TestCommandExitCodes(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		// The variables a deployment sets for `outbox relay` are ignored.
		env := map[string]string{
			"OUTBOX_STORE_URL":  "postgres://prod.invalid:5432/app",
			"OUTBOX_BROKER_URL": "kafka://prod.invalid:9092",
			"OUTBOX_LEASE":      "1h",
			"OUTBOX_CHAOS":      "long",
		}
		code, out, errOut := outboxRun(t, env, "demo", "--duration", "1s", "--rate", "50")
		if code != 0 {
			t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		for _, want := range []string{"SQLite", "embedded", "NATS", "lease 3s", "\nCLEAN: nothing lost"} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("chaos", func(t *testing.T) {
		// Relay processes are this test binary, running the CLI (TestMain).
		code, out, errOut := outboxRun(t, nil, "demo", "--broker", "kafka", "--chaos", "--kills", "1", "--lease", "1s",
			"--duration", "2s", "--rate", "50")
		if code != 0 || !strings.Contains(out, "killed with SIGKILL") || !strings.Contains(out, "1 killed") {
			t.Fatalf("exit code %d, want 0 after one SIGKILL\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
	t.Run("lost", func(t *testing.T) {
		// The consumer drops one message: the verdict shows it lost.
		var seen atomic.Int64
		restore := demo.SetReceiveHook(func(ledger.Received) bool { return seen.Add(1) != 10 })
		defer restore()
		code, out, errOut := outboxRun(t, nil, "demo", "--duration", "1s", "--rate", "50", "--drain-timeout", "1s")
		if code != 1 {
			t.Fatalf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if !strings.Contains(out, "NOT CLEAN: 1 lost.") || !strings.Contains(errOut, "not clean") {
			t.Fatalf("want the verdict NOT CLEAN: 1 lost, and an error\nstdout:\n%s\nstderr:\n%s", out, errOut)
		}
	})
	for name, args := range map[string][]string{
		"unknown broker": {"--broker", "amqp://localhost"},
		"mongodb":        {"--store", "mongodb://localhost/app"},
		"negative rate":  {"--rate", "-5"},
		"unknown flag":   {"--chaoss"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := outboxRun(t, nil, append([]string{"demo"}, args...)...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
		})
	}
}

// TestInterrupted cancels a run midway, as Ctrl-C does: the demo stops
// writing, still prints a verdict (marked interrupted, so not clean) and
// removes its temporary directory.
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	var seen atomic.Int64
	restore := demo.SetReceiveHook(func(ledger.Received) bool {
		if seen.Add(1) == 20 {
			cancel()
		}
		return true
	})
	defer restore()
	cfg := quick(t, demo.EmbeddedNATS)
	cfg.Duration = time.Minute
	var out bytes.Buffer
	start := time.Now()
	v, err := demo.Run(ctx, cfg, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !v.Interrupted || v.Clean() || v.Lost != 0 {
		t.Fatalf("interrupted %v, clean %v, lost %d; want true, false, 0\n%s", v.Interrupted, v.Clean(), v.Lost, out.String())
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the interrupted run took %v", took)
	}
	if !strings.Contains(out.String(), "NOT CLEAN: interrupted.") {
		t.Fatalf("no interrupted verdict:\n%s", out.String())
	}
	leftovers(t, cfg.TempDir)
}

// TestOutboxDemoCommand checks the outbox-demo command (demo.Main): the same
// demo and exit codes as `outbox demo`, and, where no outbox command is
// installed beside it or on PATH, --chaos that says its crashes are
// simulated in process instead of failing.
func TestOutboxDemoCommand(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no outbox command on it
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := demo.Main(testContext(t), args, strings.NewReader(""), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := run("--duration", "2s", "--rate", "50", "--chaos", "--kills", "1", "--lease", "1s")
	if code != 0 || !strings.Contains(out, "1 simulated crashes") || !strings.Contains(out, "\nCLEAN: nothing lost") {
		t.Fatalf("exit code %d, want 0 after one simulated crash\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "outbox-demo: --chaos: no outbox command") {
		t.Errorf("stderr does not say why the crashes are simulated:\n%s", errOut)
	}
	if code, out, errOut := run("--chaoss"); code != 2 || !strings.Contains(errOut, "outbox-demo: unknown flag: --chaoss") {
		t.Fatalf("exit code %d, want 2 naming outbox-demo and the flag\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
