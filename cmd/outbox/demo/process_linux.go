package demo

import (
	"os"
	"os/exec"
	"syscall"
)

// detach puts a relay process in a process group of its own, so that the
// Ctrl-C that interrupts the demo in a terminal reaches the demo only (it
// then stops the relay itself), and has it killed if the demo dies first.
func detach(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// terminate asks a relay process to stop gracefully.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
