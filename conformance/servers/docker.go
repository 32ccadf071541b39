package servers

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// dockerPingTimeout bounds the one check for a Docker daemon.
const dockerPingTimeout = 3 * time.Second

// containerWait bounds how long WaitContainer waits for a container's server,
// image pull excluded.
const containerWait = 2 * time.Minute

var dockerPool = sync.OnceValues(func() (*dockertest.Pool, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("no Docker client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerPingTimeout)
	defer cancel()
	if err := pool.Client.PingWithContext(ctx); err != nil {
		return nil, fmt.Errorf("no Docker daemon answered at %s within %v (set DOCKER_HOST if it runs elsewhere): %w",
			pool.Client.Endpoint(), dockerPingTimeout, err)
	}
	pool.MaxWait = containerWait
	return pool, nil
})

// Docker returns the dockertest pool for the Docker daemon named by
// DOCKER_HOST (or the platform's default socket), or an error saying that no
// daemon answered. The daemon is pinged once per test binary, with a short
// timeout, and the answer is remembered.
func Docker() (*dockertest.Pool, error) {
	return dockerPool()
}

// DockerHost returns the host on which published container ports are
// reached: the host of a tcp:// DOCKER_HOST, else 127.0.0.1.
func DockerHost() string {
	pool, err := Docker()
	if err != nil {
		return "127.0.0.1"
	}
	return dockerHostOf(pool.Client.Endpoint())
}

func dockerHostOf(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "127.0.0.1"
	}
	switch u.Scheme {
	case "tcp", "http", "https":
		if h := u.Hostname(); h != "" && h != "localhost" {
			return h
		}
	}
	return "127.0.0.1"
}

// RunContainer starts a throwaway container. Beyond what opts ask for, the
// container removes itself when it stops (AutoRemove), is never restarted,
// stops itself a little after the test binary's -test.timeout in case
// nothing purges it (Expire), and is purged by Main at the end of the test
// binary. It publishes exactly opts.ExposedPorts, on random host ports unless
// opts.PortBindings names them, and on 127.0.0.1 only when the daemon is
// local.
func RunContainer(opts *dockertest.RunOptions) (*dockertest.Resource, error) {
	pool, err := Docker()
	if err != nil {
		return nil, err
	}
	image := opts.Repository + ":" + opts.Tag
	if opts.Name == "" {
		opts.Name = "txoutbox-" + identifier(opts.Repository) + "-" + randomID(10)
	}
	if opts.Labels == nil {
		opts.Labels = map[string]string{}
	}
	opts.Labels["org.txoutbox.conformance"] = "throwaway"

	hostIP := ""
	if DockerHost() == "127.0.0.1" {
		hostIP = "127.0.0.1"
	}
	if opts.PortBindings == nil {
		opts.PortBindings = map[docker.Port][]docker.PortBinding{}
	}
	for _, p := range opts.ExposedPorts {
		if _, ok := opts.PortBindings[docker.Port(p)]; !ok {
			opts.PortBindings[docker.Port(p)] = []docker.PortBinding{{HostIP: hostIP}}
		}
	}
	for port, bindings := range opts.PortBindings {
		for i := range bindings {
			if bindings[i].HostIP == "" {
				bindings[i].HostIP = hostIP
			}
		}
		opts.PortBindings[port] = bindings
	}

	res, err := pool.RunWithOptions(opts, func(hc *docker.HostConfig) {
		hc.PublishAllPorts = false // only opts.ExposedPorts, bound as above
		hc.AutoRemove = true
		hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
	})
	if err != nil {
		// A container that was created but failed to start is not
		// removed automatically.
		_ = pool.RemoveContainerByName(opts.Name)
		return nil, fmt.Errorf("run %s: %w", image, err)
	}
	atExit(func() { purge(pool, res) })
	if err := res.Expire(uint(containerTTL() / time.Second)); err != nil {
		purge(pool, res)
		return nil, fmt.Errorf("run %s: set its expiry: %w", image, err)
	}
	return res, nil
}

// containerTTL is how long a container may outlive its start: the test
// binary's timeout (which ends it) plus a margin, or an hour without one.
func containerTTL() time.Duration {
	timeout := 10 * time.Minute
	if f := flag.Lookup("test.timeout"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok {
				timeout = d
			}
		}
	}
	if timeout <= 0 {
		timeout = time.Hour
	}
	return timeout + 2*time.Minute
}

func purge(pool *dockertest.Pool, res *dockertest.Resource) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = pool.Client.RemoveContainer(docker.RemoveContainerOptions{
		ID: res.Container.ID, Force: true, RemoveVolumes: true, Context: ctx,
	})
}

// HostPort returns the host:port at which the test reaches the container's
// port (such as "5432/tcp").
func HostPort(res *dockertest.Resource, port string) string {
	return net.JoinHostPort(DockerHost(), res.GetPort(port))
}

// WaitContainer polls ready until it returns nil, giving up when the
// container stops or after two minutes. Its error carries the end of the
// container's log.
func WaitContainer(res *dockertest.Resource, ready func(ctx context.Context) error) error {
	pool, err := Docker()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerWait)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var notReady error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		notReady = ready(attempt)
		cancelAttempt()
		if notReady == nil {
			return nil
		}
		c, err := pool.Client.InspectContainerWithContext(res.Container.ID, ctx)
		var gone *docker.NoSuchContainer
		switch {
		case errors.As(err, &gone):
			return fmt.Errorf("container %s exited before it was ready: %w", res.Container.Name, notReady)
		case err == nil && !c.State.Running:
			return fmt.Errorf("container %s stopped (%s) before it was ready: %w%s",
				res.Container.Name, c.State.String(), notReady, containerLog(pool, res))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s not ready after %v: %w%s",
				res.Container.Name, containerWait, notReady, containerLog(pool, res))
		case <-tick.C:
		}
	}
}

// containerLog returns "; last output: a | b | c" from the container's log.
func containerLog(pool *dockertest.Pool, res *dockertest.Resource) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var buf bytes.Buffer
	_ = pool.Client.Logs(docker.LogsOptions{
		Context: ctx, Container: res.Container.ID,
		OutputStream: &buf, ErrorStream: &buf,
		Stdout: true, Stderr: true, Tail: "20",
	})
	t := &tail{max: buf.Len() + 1}
	_, _ = t.Write(buf.Bytes())
	return t.lastLines(3)
}
