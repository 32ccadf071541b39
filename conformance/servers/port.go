package servers

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// handedOut remembers the ports FreePort returned, so that two servers
// started by this binary never get the same one even if the kernel offers it
// twice before the first server binds it.
var (
	portMu    sync.Mutex
	handedOut = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right now
// and that this binary has not handed out before. Another process can still
// take it before the caller binds it; servers started on it fail loudly then.
func FreePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("find a free port on 127.0.0.1: the kernel kept offering ports already handed out")
}

// answers reports whether something accepts TCP connections on addr.
func answers(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
