package servers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ProcessConfig describes a local server process for StartProcess, or a
// one-shot command (initdb and the like) for RunCommand.
type ProcessConfig struct {
	// Name names the process in errors, e.g. "postgres".
	Name string
	// Path is the binary to run.
	Path string
	// Args are its arguments.
	Args []string
	// Env is added to the test binary's environment (KEY=VALUE).
	Env []string
	// Dir is the working directory; it must be accessible to User.
	Dir string
	// User is the OS user to run as (see ServiceUser); "" runs as the user
	// running the tests. Supported on Linux.
	User string

	// Addr is the 127.0.0.1:port the server listens on: StartProcess waits
	// until it accepts TCP connections. Required by StartProcess.
	Addr string
	// Ready, if set, is polled after Addr answers until it returns nil, each
	// call bounded to 5 seconds: for servers that accept connections before
	// they accept queries.
	Ready func(ctx context.Context) error
	// Timeout bounds the wait for readiness (StartProcess) or the whole run
	// (RunCommand). Zero means one minute.
	Timeout time.Duration
	// StopSignal asks the server to shut down; nil means SIGTERM. If it has
	// not exited 10 seconds later it is killed.
	StopSignal os.Signal
}

func (c *ProcessConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return time.Minute
}

// Process is a server process started by StartProcess.
type Process struct {
	cfg    ProcessConfig
	cmd    *exec.Cmd
	out    *tail
	exited chan struct{} // closed when the process has exited
	err    error         // how it exited, once exited is closed

	stopOnce sync.Once
	stopErr  error
	drop     func() // removes Stop from the at-exit list
}

// StartProcess starts a server process and waits until it answers on
// cfg.Addr (and cfg.Ready passes). The process is stopped by Stop, or by
// Main at the end of the test binary, and on Linux it is killed if the test
// binary dies first.
func StartProcess(cfg ProcessConfig) (*Process, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%s: ProcessConfig.Addr is required: StartProcess waits until the server answers there", cfg.Name)
	}
	cmd, out, err := command(cfg)
	if err != nil {
		return nil, err
	}
	if err := startCommand(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Path, err)
	}
	p := &Process{cfg: cfg, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	p.drop = atExit(func() { _ = p.Stop() })

	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout())
	defer cancel()
	if err := p.waitReady(ctx); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("%s: %w%s", cfg.Name, err, p.out.lastLines(3))
	}
	return p, nil
}

func (p *Process) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var notReady error
	for {
		if answers(ctx, p.cfg.Addr) {
			if p.cfg.Ready == nil {
				return nil
			}
			attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
			notReady = p.cfg.Ready(attempt)
			cancel()
			if notReady == nil {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it answered on %s: %v", p.cfg.Addr, p.err)
		case <-ctx.Done():
			if notReady != nil {
				return fmt.Errorf("not ready after %v: %w", p.cfg.timeout(), notReady)
			}
			return fmt.Errorf("nothing answered on %s after %v", p.cfg.Addr, p.cfg.timeout())
		case <-tick.C:
		}
	}
}

// Stop asks the process to shut down, kills it if it is still running 10
// seconds later, and waits for it to exit. Calls after the first return the
// first result.
func (p *Process) Stop() error {
	return p.StopWith(p.cfg.StopSignal)
}

// StopWith is Stop with sig instead of ProcessConfig.StopSignal (nil:
// SIGTERM), e.g. SIGQUIT for PostgreSQL's immediate shutdown.
func (p *Process) StopWith(sig os.Signal) error {
	p.stopOnce.Do(func() {
		p.drop()
		if sig == nil {
			sig = syscall.SIGTERM
		}
		if err := p.cmd.Process.Signal(sig); err != nil {
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			p.stopErr = fmt.Errorf("%s did not stop within 10s of %v and was killed", p.cfg.Name, sig)
		}
	})
	return p.stopErr
}

// Kill ends the process at once with SIGKILL, as a crash would, and waits
// until it has exited. Stop after Kill does nothing.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		p.drop()
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
}

// Exited is closed when the process has exited, stopped or not.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Output returns the end of what the process wrote to stdout and stderr.
func (p *Process) Output() string { return p.out.String() }

// RunCommand runs a one-shot command to completion, such as initdb, and
// returns an error with the end of its output if it fails or outlives
// cfg.Timeout. cfg.Addr, Ready and StopSignal are ignored.
func RunCommand(cfg ProcessConfig) error {
	cmd, out, err := command(cfg)
	if err != nil {
		return err
	}
	if err := startCommand(cmd); err != nil {
		return fmt.Errorf("start %s: %w", cfg.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(cfg.timeout()):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("still running after %v, killed", cfg.timeout())
	}
	if err != nil {
		return fmt.Errorf("%s: %w%s", cfg.Name, err, out.lastLines(3))
	}
	return nil
}

func command(cfg ProcessConfig) (*exec.Cmd, *tail, error) {
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(os.Environ(), cfg.Env...)
	out := &tail{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	// A server's children (PostgreSQL backends) may hold the output pipe
	// open for a moment after it exits; do not wait on them forever.
	cmd.WaitDelay = 5 * time.Second
	if err := setProcAttr(cmd, cfg.User); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	return cmd, out, nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLines returns "; last output: a | b | c" for the last n non-empty
// lines, or "" when there was no output.
func (t *tail) lastLines(n int) string {
	var lines []string
	for _, l := range strings.Split(t.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "; last output: " + strings.Join(lines, " | ")
}

// Restartable is a local server of one test that the test can stop and
// start again (on the same port and data, which start keeps). Its methods
// end the test on failure, so call them from the test's goroutine, or
// through For from a subtest's.
type Restartable struct {
	t testing.TB
	*restartable
}

type restartable struct {
	name  string
	start func() (*Process, error)

	mu   sync.Mutex
	proc *Process // nil while stopped
}

// StartRestartable starts a server with start, which runs it on the same
// port and data every time, and stops it when t ends.
func StartRestartable(t testing.TB, name string, start func() (*Process, error)) *Restartable {
	t.Helper()
	r := &Restartable{t: t, restartable: &restartable{name: name, start: start}}
	r.Start()
	t.Cleanup(func() { r.Stop(nil) })
	return r
}

// For returns the same server, reporting failures to t (a subtest).
func (r *Restartable) For(t testing.TB) *Restartable {
	return &Restartable{t: t, restartable: r.restartable}
}

// Stop shuts the server down with sig (nil: its StopSignal) and waits
// until it has exited. Stopping a stopped server does nothing.
func (r *Restartable) Stop(sig os.Signal) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	if sig == nil {
		sig = r.proc.cfg.StopSignal
	}
	err := r.proc.StopWith(sig)
	r.proc = nil
	if err != nil {
		r.t.Errorf("%s: %v", r.name, err)
	}
}

// Start starts the server again and waits until it answers. Starting a
// running server does nothing.
func (r *Restartable) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return
	}
	proc, err := r.start()
	if err != nil {
		r.t.Fatalf("%s: start: %v", r.name, err)
	}
	r.proc = proc
}
