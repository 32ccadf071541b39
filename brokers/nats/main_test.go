package natspub

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// TestMain gives the examples their server in NATS_URL, as a service
// would read it (examples are meant to be copied, so they call no test
// helper): OUTBOX_TEST_NATS_URL, or a throwaway nats-server, or it skips
// the examples that need a server (failing instead under
// OUTBOX_TEST_REQUIRE).
func TestMain(m *testing.M) {
	flag.Parse()
	url := os.Getenv(servers.EnvNATSURL)
	if url == "" {
		var err error
		if url, err = startExampleServer(); err != nil {
			if servers.Required(servers.NATS) {
				fmt.Fprintf(os.Stderr, "nats: no server for the examples: %v\n", err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "nats: skipping the examples that need a server: %v\n", err)
			_ = flag.Set("test.skip", "^Example$")
		}
	}
	os.Setenv("NATS_URL", url)
	os.Exit(servers.Main(m))
}

// startExampleServer starts a throwaway nats-server with JetStream that
// servers.Main stops at the end of the test binary.
func startExampleServer() (string, error) {
	bin, err := servers.FindBinary([]string{"nats-server"}, "/usr/sbin", "/usr/local/bin", "/usr/bin")
	if err != nil {
		return "", err
	}
	dir, err := servers.TempDir("nats-example", "")
	if err != nil {
		return "", err
	}
	port, err := servers.FreePort()
	if err != nil {
		return "", err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	_, err = servers.StartProcess(servers.ProcessConfig{
		Name: "nats-server", Path: bin, Dir: dir,
		Args: []string{"-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", dir},
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Ready: func(ctx context.Context) error {
			nc, err := nats.Connect(url, nats.Timeout(time.Second))
			if err != nil {
				return err
			}
			nc.Close()
			return nil
		},
	})
	return url, err
}
