// Package natsserver gives tests a NATS server with JetStream and a stream of
// their own on it, and a local server they can stop and restart for outage
// tests.
//
// URL's server is the one in OUTBOX_TEST_NATS_URL, else a throwaway local
// nats-server (from PATH or /usr/sbin), else a nats:2 container; with none
// the test skips, or fails under OUTBOX_TEST_REQUIRE. See package servers,
// whose Main the test binary must call.
package natsserver

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ory/dockertest/v3"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// Docker image of the throwaway container.
const (
	ImageRepository = "nats"
	ImageTag        = "2"
)

// DuplicateWindow is the duplicate-detection window of the streams Stream
// creates.
const DuplicateWindow = 2 * time.Minute

var finder = servers.Finder[string]{
	Backend: servers.NATS,
	FromEnv: func(v string) (string, error) { return v, nil },
	Local: func() (string, error) {
		url, _, err := startLocal()
		return url, err
	},
	Docker: startContainer,
}

// URL returns the URL of the test server, nats://..., finding the server on
// first use. The server has JetStream enabled.
func URL(t testing.TB) string {
	t.Helper()
	return finder.Get(t)
}

// Stream creates a JetStream stream for this test alone on the server at url,
// capturing the subjects subjectPrefix.>, with file storage and a
// DuplicateWindow duplicate window, and deletes it when the test ends.
func Stream(t testing.TB, url string) (stream, subjectPrefix string) {
	t.Helper()
	name := servers.Name(t, "outbox")
	err := withJetStream(url, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{name + ".>"},
			Storage:    jetstream.FileStorage,
			Duplicates: DuplicateWindow,
		})
		return err
	})
	if err != nil {
		t.Fatalf("natsserver: create stream: %v", err)
	}
	t.Cleanup(func() {
		err := withJetStream(url, func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, name)
		})
		if err != nil {
			t.Errorf("natsserver: delete stream %s (a test that stops the server should start it again before it ends): %v", name, err)
		}
	})
	return name, name
}

// withJetStream runs fn on a connection of its own.
func withJetStream(url string, fn func(context.Context, jetstream.JetStream) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(url, nats.Name("txoutbox conformance"), nats.Timeout(5*time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return fn(ctx, js)
}

// ready reports whether the server at url answers with JetStream enabled.
func ready(url string) error {
	return withJetStream(url, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
}

// binDirs are where nats-server is installed when it is not on PATH.
var binDirs = []string{"/usr/sbin", "/usr/local/bin", "/usr/bin"}

func findBinary() (string, error) {
	return servers.FindBinary([]string{"nats-server"}, binDirs...)
}

// startServer runs nats-server with JetStream on 127.0.0.1:port, storing in
// dir.
func startServer(bin string, port int, dir string) (*servers.Process, error) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	return servers.StartProcess(servers.ProcessConfig{
		Name:  "nats-server",
		Path:  bin,
		Args:  []string{"-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", dir},
		Dir:   dir,
		Addr:  fmt.Sprintf("127.0.0.1:%d", port),
		Ready: func(context.Context) error { return ready(url) },
	})
}

func startLocal() (string, *servers.Process, error) {
	bin, err := findBinary()
	if err != nil {
		return "", nil, err
	}
	dir, err := servers.TempDir("nats", "")
	if err != nil {
		return "", nil, err
	}
	port, err := servers.FreePort()
	if err != nil {
		return "", nil, err
	}
	proc, err := startServer(bin, port, dir)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port), proc, nil
}

func startContainer() (string, error) {
	res, err := servers.RunContainer(&dockertest.RunOptions{
		Repository:   ImageRepository,
		Tag:          ImageTag,
		Cmd:          []string{"-js", "-sd", "/data"},
		ExposedPorts: []string{"4222/tcp"},
	})
	if err != nil {
		return "", err
	}
	url := "nats://" + servers.HostPort(res, "4222/tcp")
	if err := servers.WaitContainer(res, func(context.Context) error { return ready(url) }); err != nil {
		return "", err
	}
	return url, nil
}
