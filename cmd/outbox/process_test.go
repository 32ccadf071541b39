package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cleanEnv is the environment of outbox processes: the test's, without
// any OUTBOX_ variable other than the test-server ones, so that a
// developer's settings cannot leak into a test.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OUTBOX_") && !strings.HasPrefix(kv, "OUTBOX_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// result is what a finished outbox command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// runOutbox runs the outbox binary to completion with stdin (may be nil).
func runOutbox(t testing.TB, ctx context.Context, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, outboxBinary(t), args...)
	cmd.Env = cleanEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("outbox %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// mustRun runs the binary and fails t unless it exits 0.
func mustRun(t testing.TB, ctx context.Context, env []string, args ...string) result {
	t.Helper()
	r := runOutbox(t, ctx, env, "", args...)
	if r.code != 0 {
		t.Fatalf("outbox %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// process is a running outbox command, such as a relay.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // set when done is closed
}

// startOutbox starts the binary in the background; it is killed when t
// ends if still running.
func startOutbox(t testing.TB, name string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(outboxBinary(t), args...)
	cmd.Env = cleanEnv(env...)
	p := &process{name: name, cmd: cmd, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.kill()
		if t.Failed() {
			t.Logf("--- output of %s (last 64 KiB):\n%s", name, p.out.String())
		}
	})
	return p
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *process) kill() error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		return err
	}
	<-p.done
	return nil
}

// stop sends SIGTERM and waits up to grace for the process to exit; it
// reports an error unless the process exited with status 0 in time.
func (p *process) stop(grace time.Duration) error {
	if !p.exited() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.exited() {
			return err
		}
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM; output:\n%s", p.name, grace, p.out.String())
	}
	if p.err != nil {
		return fmt.Errorf("%s: %v after SIGTERM; output:\n%s", p.name, p.err, p.out.String())
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

var _ io.Writer = (*tailBuffer)(nil)
