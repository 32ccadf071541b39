package servers

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// Finder finds one backend's server once per test binary, in the order the
// package documents: the environment, then local binaries, then Docker. A
// Finder is declared as a package variable of a backend package; it is safe
// for concurrent use, and the first caller's discovery, failed or not, is the
// answer for every later caller.
type Finder[T any] struct {
	// Backend is the backend's name: Postgres, MySQL, Mongo, Kafka or NATS.
	Backend string

	// FromEnv turns the value of the backend's environment variable into a
	// server. An error fails the tests: a variable that is set but wrong is a
	// mistake to fix, not a reason to skip.
	FromEnv func(value string) (T, error)

	// Local starts a throwaway server from binaries installed on the machine,
	// or says why it could not. Nil when the backend has no local path.
	Local func() (T, error)

	// Docker starts a throwaway container, or says why it could not. It is
	// called only when a Docker daemon answers. Nil when the backend has no
	// container path.
	Docker func() (T, error)

	once   sync.Once
	server T
	how    string // how the server was found, logged to the first caller
	err    error
}

// NoServerError is a discovery failure that means "no server here": Finder.Get
// turns it into Unavailable (a skip, or a failure under OUTBOX_TEST_REQUIRE)
// instead of failing the test outright.
type NoServerError struct {
	Reason string // what was tried, on one line
}

// Error implements error.
func (e *NoServerError) Error() string { return "no server: " + e.Reason }

// Get returns the backend's server, finding it on the first call. It ends the
// test when there is none (see Unavailable), when the environment variable
// cannot be used, or when the test binary would start a throwaway server
// without calling Main to stop it.
func (f *Finder[T]) Get(t testing.TB) T {
	t.Helper()
	env := backends[f.Backend].env
	if os.Getenv(env) == "" && !mainRunning.Load() {
		t.Fatalf("%s: throwaway servers need servers.Main to stop them: add "+
			"func TestMain(m *testing.M) { os.Exit(servers.Main(m)) } to this package's tests, or set %s",
			f.Backend, env)
		var none T
		return none
	}
	first := false
	f.once.Do(func() {
		first = true
		f.server, f.how, f.err = f.find(env)
	})
	if f.err != nil {
		var noServer *NoServerError
		if errors.As(f.err, &noServer) {
			Unavailable(t, f.Backend, noServer.Reason)
		} else {
			t.Fatalf("%s: %v", f.Backend, f.err)
		}
	} else if first {
		t.Logf("%s: %s", f.Backend, f.how)
	}
	return f.server
}

func (f *Finder[T]) find(env string) (server T, how string, err error) {
	if v := os.Getenv(env); v != "" {
		server, err = f.FromEnv(v)
		if err != nil {
			return server, "", fmt.Errorf("%s: %w", env, err)
		}
		return server, "using the server in " + env, nil
	}
	var tried []string
	if f.Local != nil {
		server, err = f.Local()
		if err == nil {
			return server, fmt.Sprintf("started a throwaway local server: %v", server), nil
		}
		tried = append(tried, "local: "+err.Error())
	}
	if f.Docker != nil {
		if _, err = Docker(); err == nil {
			server, err = f.Docker()
			if err == nil {
				return server, fmt.Sprintf("started a throwaway container: %v", server), nil
			}
		}
		tried = append(tried, "docker: "+err.Error())
	}
	return server, "", &NoServerError{Reason: oneLine(strings.Join(tried, "; "))}
}
