package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the child when the test binary dies, so that a
// crashed or killed test run leaves no relay behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
