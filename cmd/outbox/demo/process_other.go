//go:build !unix

package demo

import (
	"os"
	"os/exec"
)

func detach(*exec.Cmd) {}

// terminate stops a relay process; without signals, it is a kill, and the
// relay's leases expire instead of being released.
func terminate(p *os.Process) error { return p.Kill() }
