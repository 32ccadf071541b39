package demo

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// processRelay is an `outbox relay` process. Its kill is a real SIGKILL.
type processRelay struct {
	cmd  *exec.Cmd
	log  string // its output
	done chan struct{}
}

// startProcess starts relay process n with the command cfg.RelayCommand
// makes, its output in dir/relay-n.log.
func startProcess(cfg Config, st *store, br *broker, dir string, n int) (relay, error) {
	args := append([]string{"relay",
		"--owner", fmt.Sprintf("outbox-demo-relay-%d", n),
		"--lease", cfg.Lease.String(),
		"--poll-interval", relayPollInterval.String(),
	}, st.relayArgs...)
	cmd := cfg.RelayCommand(args)
	cmd.Env = relayEnv(cmd.Env, st.url, br.url)
	path := filepath.Join(dir, fmt.Sprintf("relay-%d.log", n))
	out, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	detach(cmd)
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, err
	}
	p := &processRelay{cmd: cmd, log: path, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	return p, nil
}

// relayEnv is the environment of a relay process: base (default: this
// process's), without the OUTBOX_ variables that would configure it beyond
// what the demo says, plus the store and broker URLs.
func relayEnv(base []string, storeURL, brokerURL string) []string {
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+2)
	for _, kv := range base {
		if strings.HasPrefix(kv, "OUTBOX_") && !strings.HasPrefix(kv, "OUTBOX_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "OUTBOX_STORE_URL="+storeURL, "OUTBOX_BROKER_URL="+brokerURL)
}

func (p *processRelay) kill() { _ = p.cmd.Process.Kill() }

func (p *processRelay) stop() error {
	if err := terminate(p.cmd.Process); err != nil {
		_ = p.cmd.Process.Kill()
	}
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("the relay did not stop within 15s of SIGTERM; killed it")
	}
	// -1: the signal ended it before it could handle it (it was starting).
	if code := p.cmd.ProcessState.ExitCode(); code != 0 && code != -1 {
		return fmt.Errorf("the relay exited with code %d:\n%s", code, p.tail())
	}
	return nil
}

func (p *processRelay) exited() <-chan struct{} { return p.done }
func (p *processRelay) notify()                 {}

// tail returns the last lines of the relay's output.
func (p *processRelay) tail() string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(bytes.TrimSpace(data)), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
