// Package mongoserver gives tests a MongoDB server and a database of their
// own on it.
//
// The server is the one in OUTBOX_TEST_MONGO_URL, else a throwaway local
// mongod, else a mongo:7 container; with none the test skips, or fails under
// OUTBOX_TEST_REQUIRE. Throwaway servers are single-node replica sets (rs0),
// so transactions and change streams work; a server from the environment may
// be anything that speaks the MongoDB wire protocol, with or without them. See
// package servers, whose Main the test binary must call.
package mongoserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// Docker image of the throwaway container.
const (
	ImageRepository = "mongo"
	ImageTag        = "7"
)

// ReplicaSet is the name of the throwaway servers' replica set.
const ReplicaSet = "rs0"

var finder = servers.Finder[string]{
	Backend: servers.Mongo,
	FromEnv: func(v string) (string, error) {
		if err := options.Client().ApplyURI(v).Validate(); err != nil {
			return "", err
		}
		return v, nil
	},
	Local: func() (string, error) {
		url, _, err := startLocal()
		return url, err
	},
	Docker: startContainer,
}

// URL returns the connection URL of the test server, mongodb://..., finding
// the server on first use.
func URL(t testing.TB) string {
	t.Helper()
	return finder.Get(t)
}

// Database returns the server's URL and a database name for this test alone,
// and drops that database when the test ends. MongoDB creates the database
// on first write.
func Database(t testing.TB) (url, name string) {
	t.Helper()
	url = URL(t)
	name = servers.Name(t, "outbox")
	t.Cleanup(func() {
		err := withClient(url, func(ctx context.Context, c *mongo.Client) error {
			return c.Database(name).Drop(ctx)
		})
		if err != nil {
			t.Errorf("mongoserver: drop database %s: %v", name, err)
		}
	})
	return url, name
}

// withClient runs fn with a client of its own on url.
func withClient(url string, fn func(context.Context, *mongo.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(url).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		return err
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	return fn(ctx, c)
}

// serverURL is the URL of a throwaway server at host:port. directConnection
// keeps the driver on the address the test can reach, whatever host name the
// replica set's configuration holds.
func serverURL(hostPort string) string {
	return "mongodb://" + hostPort + "/?directConnection=true"
}

// initiate turns the fresh mongod at url into a single-node replica set
// whose one member is member, and waits until it is primary.
func initiate(ctx context.Context, url, member string) error {
	c, err := mongo.Connect(options.Client().ApplyURI(url).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		return err
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	admin := c.Database("admin")

	cfg := bson.D{
		{Key: "_id", Value: ReplicaSet},
		{Key: "members", Value: bson.A{bson.D{{Key: "_id", Value: 0}, {Key: "host", Value: member}}}},
	}
	err = admin.RunCommand(ctx, bson.D{{Key: "replSetInitiate", Value: cfg}}).Err()
	var cmdErr mongo.CommandError
	const alreadyInitialized = 23
	if err != nil && !(errors.As(err, &cmdErr) && cmdErr.HasErrorCode(alreadyInitialized)) {
		return fmt.Errorf("replSetInitiate: %w", err)
	}

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var hello struct {
			IsWritablePrimary bool `bson:"isWritablePrimary"`
		}
		err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello)
		if err == nil && hello.IsWritablePrimary {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the replica set has no primary: %w (last hello: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func ping(ctx context.Context, url string) error {
	c, err := mongo.Connect(options.Client().ApplyURI(url).SetServerSelectionTimeout(2 * time.Second))
	if err != nil {
		return err
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	return c.Ping(ctx, nil)
}

// binDirs are where mongod is installed when it is not on PATH.
var binDirs = []string{"/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"}

func startLocal() (string, *servers.Process, error) {
	mongod, err := servers.FindBinary([]string{"mongod"}, binDirs...)
	if err != nil {
		return "", nil, err
	}
	dir, err := servers.TempDir("mongo", "")
	if err != nil {
		return "", nil, err
	}
	port, err := servers.FreePort()
	if err != nil {
		return "", nil, err
	}
	member := fmt.Sprintf("127.0.0.1:%d", port)
	url := serverURL(member)
	proc, err := servers.StartProcess(servers.ProcessConfig{
		Name: "mongod", Path: mongod, Dir: dir,
		Args: []string{
			"--replSet", ReplicaSet, "--bind_ip", "127.0.0.1", "--port", strconv.Itoa(port),
			"--dbpath", dir, "--unixSocketPrefix", dir, "--oplogSize", "128",
		},
		Addr:  member,
		Ready: func(ctx context.Context) error { return ping(ctx, url) },
	})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := initiate(ctx, url, member); err != nil {
		_ = proc.Stop()
		return "", nil, fmt.Errorf("mongod: %w", err)
	}
	return url, proc, nil
}

// startContainer runs mongod on the same port inside the container as on the
// host, so that the member address 127.0.0.1:port in the replica set's
// configuration is the member itself inside and reachable outside.
func startContainer() (string, error) {
	var lastErr error
	for range 3 { // the free port may be taken before Docker binds it
		port, err := servers.FreePort()
		if err != nil {
			return "", err
		}
		p := strconv.Itoa(port)
		res, err := servers.RunContainer(&dockertest.RunOptions{
			Repository:   ImageRepository,
			Tag:          ImageTag,
			Cmd:          []string{"--replSet", ReplicaSet, "--bind_ip_all", "--port", p},
			ExposedPorts: []string{p + "/tcp"},
			PortBindings: map[docker.Port][]docker.PortBinding{docker.Port(p + "/tcp"): {{HostPort: p}}},
		})
		if err != nil {
			lastErr = err
			continue
		}
		url := serverURL(servers.HostPort(res, p+"/tcp"))
		if err := servers.WaitContainer(res, func(ctx context.Context) error { return ping(ctx, url) }); err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := initiate(ctx, url, "127.0.0.1:"+p); err != nil {
			return "", fmt.Errorf("mongo container: %w", err)
		}
		return url, nil
	}
	return "", lastErr
}
