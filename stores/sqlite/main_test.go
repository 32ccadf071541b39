package sqlitestore_test

import (
	"os"
	"testing"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(laneRelayEnv); path != "" { // a child of TestLaneRelaysInSeparateProcessesKeepKeyOrder
		os.Exit(runLaneRelayProcess(path))
	}
	// SQLite needs no server; servers.Main keeps the shared conventions
	// (and would stop anything a test started).
	os.Exit(servers.Main(m))
}
