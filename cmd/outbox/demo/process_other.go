//go:build !unix

package demo

import (
	"os"
	"os/exec"
)

func detach(*exec.Cmd) {}

// terminate stops a relay process; without signals, it is a kill, and the
// relay's lanes wait for their lease to expire instead of being given back.
func terminate(p *os.Process) error { return p.Kill() }
