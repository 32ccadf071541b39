package servers

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// pdeathsig reports whether children die with the test binary.
const pdeathsig = true

// setProcAttr makes the child die with the test binary (SIGKILL on the
// parent's death) and, when user is set, run as that user. The kernel resets
// the parent-death signal when credentials change, which is why the server
// is not left to drop privileges itself: Go sets the signal after switching
// users.
func setProcAttr(cmd *exec.Cmd, user string) error {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if user != "" {
		uid, gid, err := lookupUser(user)
		if err != nil {
			return fmt.Errorf("run as user %s: %w", user, err)
		}
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	cmd.SysProcAttr = attr
	return nil
}

// The parent-death signal fires when the thread that started the child
// exits, not the process. Go keeps threads alive unless a goroutine locked
// to one exits, so children are started from a goroutine that locks its
// thread and never returns.
var (
	spawnOnce sync.Once
	spawn     = make(chan spawnRequest)
)

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func startCommand(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread()
			for r := range spawn {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnRequest{cmd: cmd, done: make(chan error, 1)}
	spawn <- r
	return <-r.done
}
