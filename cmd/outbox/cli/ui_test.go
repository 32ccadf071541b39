package cli_test

import (
	"strings"
	"testing"
)

// The console refuses to listen beyond loopback without credentials, on
// its own and beside a relay, before opening anything.
func TestConsoleRefusesAnOpenAddress(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"ui", []string{"ui", "--store", "sqlite:///tmp/never-opened.db", "--addr", "0.0.0.0:8089"}, `--addr "0.0.0.0:8089" listens on 0.0.0.0, beyond loopback`},
		{"ui all interfaces", []string{"ui", "--store", "sqlite:///tmp/never-opened.db", "--addr", ":8089"}, "listens on every interface"},
		{"relay", []string{"relay", "--store", "sqlite:///tmp/never-opened.db", "--broker", "nats://127.0.0.1:1", "--ui-addr", "10.0.0.1:8089"}, `--ui-addr "10.0.0.1:8089" listens on 10.0.0.1`},
		{"both credentials", []string{"ui", "--store", "sqlite:///tmp/never-opened.db", "--token", "t", "--basic-auth", "u:p"}, "a token or basic auth, not both"},
		{"bad basic auth", []string{"relay", "--store", "sqlite:///tmp/never-opened.db", "--broker", "nats://127.0.0.1:1", "--ui-addr", "127.0.0.1:0", "--ui-basic-auth", "ops"}, "give it as user:password"},
	} {
		_, stderr, code := run(t, nil, "", false, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", c.name, code, stderr, c.want)
		}
	}
}
