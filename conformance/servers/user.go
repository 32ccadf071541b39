package servers

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// ServiceUser returns the OS user to run a server as that refuses to run as
// root (PostgreSQL, MariaDB, MySQL): "" when the tests do not run as root, and
// name when they do and that user exists. Otherwise it says what to do.
func ServiceUser(name string) (string, error) {
	if os.Geteuid() != 0 {
		return "", nil
	}
	if _, _, err := lookupUser(name); err != nil {
		return "", fmt.Errorf("the tests run as root and the server refuses root, but there is no %q user to run it as: "+
			"create that user or run the tests as a regular user (%v)", name, err)
	}
	return name, nil
}

func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: uid %q is not a number", name, u.Uid)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: gid %q is not a number", name, u.Gid)
	}
	return uid, gid, nil
}

// TempDir creates a directory for a throwaway server that lives until Main
// removes it at the end of the test binary, owned by owner (a ServiceUser
// result; "" keeps the current user).
func TempDir(name, owner string) (string, error) {
	dir, err := os.MkdirTemp("", "txoutbox-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("create a directory for %s: %w", name, err)
	}
	atExit(func() { _ = os.RemoveAll(dir) })
	if owner != "" {
		uid, gid, err := lookupUser(owner)
		if err == nil {
			err = os.Chown(dir, uid, gid)
		}
		if err != nil {
			return "", fmt.Errorf("give %s to user %s: %w", dir, owner, err)
		}
	}
	return dir, nil
}
