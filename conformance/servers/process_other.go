//go:build !linux

package servers

import (
	"errors"
	"fmt"
	"os/exec"
)

var errNotSupported = errors.New("not supported on this system")

// pdeathsig reports whether children die with the test binary.
const pdeathsig = false

// setProcAttr runs the child as the current user. Outside Linux there is no
// parent-death signal: a test binary that is killed before Main stops its
// servers leaves them running, to be stopped by hand.
func setProcAttr(cmd *exec.Cmd, user string) error {
	if user != "" {
		return fmt.Errorf("run as user %s: %w; run the tests as a regular user", user, errNotSupported)
	}
	return nil
}

func startCommand(cmd *exec.Cmd) error { return cmd.Start() }
