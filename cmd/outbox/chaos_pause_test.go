package main

import (
	"errors"
	"syscall"
)

// Pause freezes the relay process with SIGSTOP: it keeps its connections
// and its state, and does nothing until Resume, like a process descheduled
// for a long time (a VM pause, a GC stall, a laptop lid).
func (r *chaosRelay) Pause() error { return r.signal(syscall.SIGSTOP) }

// Resume lets a frozen relay process go on with SIGCONT.
func (r *chaosRelay) Resume() error { return r.signal(syscall.SIGCONT) }

func (r *chaosRelay) signal(sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.killed || r.p.cmd.Process == nil {
		return errors.New("the relay process is not running")
	}
	return r.p.cmd.Process.Signal(sig)
}
