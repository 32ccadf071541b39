//go:build unix && !linux

package demo

import (
	"os"
	"os/exec"
	"syscall"
)

// detach puts a relay process in a process group of its own, so that the
// Ctrl-C that interrupts the demo in a terminal reaches the demo only (it
// then stops the relay itself).
func detach(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// terminate asks a relay process to stop gracefully.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
