package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// The tests of this package drive the built outbox binary: end to end
// (e2e_test.go) and under faults (chaos_test.go).

// binPath is the outbox binary that TestMain builds.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outbox-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath, err = build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := servers.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// build builds the outbox command into dir, before any test starts (so
// that no test's deadline pays for it). It uses the race detector when
// this test binary does: the packages are then in the build cache
// already, and the relay processes are checked for races too.
func build(dir string) (string, error) {
	path := filepath.Join(dir, "outbox")
	args := []string{"build", "-o", path}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return path, nil
}

// outboxBinary returns the path of the outbox binary.
func outboxBinary(testing.TB) string { return binPath }
