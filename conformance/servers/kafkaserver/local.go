package kafkaserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// EnvHome names the directory of an Apache Kafka installation whose libs/
// holds the broker's jars (kafka_2.13-<version>.jar and its dependencies),
// as scripts/services fetches them from Maven Central. Unset, the newest
// $XDG_CACHE_HOME/txoutbox/kafka-* (~/.cache/txoutbox/kafka-*) is used.
const EnvHome = "OUTBOX_TEST_KAFKA_HOME"

// Home returns the Kafka installation local nodes run from, or an error that
// says how to get one.
func Home() (string, error) {
	if h := os.Getenv(EnvHome); h != "" {
		if !hasKafkaJar(h) {
			return "", fmt.Errorf("%s=%s has no libs/kafka_2.13-*.jar", EnvHome, h)
		}
		return h, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no %s and no cache directory: %w", EnvHome, err)
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "txoutbox", "kafka-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(matches)))
	for _, m := range matches {
		if hasKafkaJar(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("no Kafka installation: run scripts/services kafka (fetches it from Maven Central) or set %s", EnvHome)
}

func hasKafkaJar(home string) bool {
	m, _ := filepath.Glob(filepath.Join(home, "libs", "kafka_2.13-*.jar"))
	return len(m) > 0
}

// ClusterConfig describes a throwaway local cluster for StartCluster.
type ClusterConfig struct {
	// Nodes is the number of KRaft nodes, each broker and controller in
	// one process. Zero means 1. With 3, killing one node keeps the
	// controller quorum.
	Nodes int

	// Properties are added to (or override) every node's server.properties,
	// e.g. "min.insync.replicas": "2" or the ssl.* settings of a TLS
	// listener. Values may use {dir}, the node's own directory.
	Properties map[string]string

	// ClientProtocol is the security protocol of the listener the tests
	// connect to (Brokers): PLAINTEXT (the default), SSL, SASL_PLAINTEXT or
	// SASL_SSL. Brokers talk to each other on a PLAINTEXT listener of their
	// own.
	ClientProtocol string

	// SCRAMUsers are created with SCRAM-SHA-512 credentials when the
	// cluster's storage is formatted: user name to password.
	SCRAMUsers map[string]string

	// Ready, if set, replaces the default readiness check of a node (a
	// metadata request over PLAINTEXT to the inter-broker listener). It is
	// polled until it returns nil.
	Ready func(ctx context.Context, node int) error
}

// Cluster is a throwaway Apache Kafka cluster of local processes, started
// from the jars of Home, that a test can kill and restart node by node on the
// same ports and data directories. Its methods end the test on failure, so
// call them from the test's goroutine.
type Cluster struct {
	t     testing.TB
	cfg   ClusterConfig
	home  string
	java  string
	nodes []*node
}

type node struct {
	id         int    // KRaft node.id, 1-based
	dir        string // config, data and log
	client     int    // port of the tests' listener
	internal   int    // PLAINTEXT port between brokers
	controller int    // port of the controller listener
	mu         sync.Mutex
	proc       *servers.Process // nil while down
}

// StartCluster starts a cluster of cfg.Nodes local Kafka nodes for this test
// and stops it when the test ends. Without a Kafka installation (see Home)
// or Java, the test skips, or fails under OUTBOX_TEST_REQUIRE=kafka.
func StartCluster(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	c, err := newCluster(t.TempDir(), cfg)
	if err != nil {
		var noServer *servers.NoServerError
		if errors.As(err, &noServer) {
			servers.Unavailable(t, servers.Kafka, noServer.Reason)
			return nil
		}
		t.Fatalf("kafkaserver: %v", err)
	}
	c.t = t
	t.Cleanup(c.stopAll)
	if err := c.startAll(); err != nil {
		t.Fatalf("kafkaserver: %v", err)
	}
	return c
}

func newCluster(dir string, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1
	}
	if cfg.ClientProtocol == "" {
		cfg.ClientProtocol = "PLAINTEXT"
	}
	home, err := Home()
	if err != nil {
		return nil, &servers.NoServerError{Reason: err.Error()}
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, &servers.NoServerError{Reason: "no java on PATH (Kafka needs Java 17 or newer)"}
	}
	c := &Cluster{cfg: cfg, home: home, java: java}
	for i := range cfg.Nodes {
		n := &node{id: i + 1, dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1))}
		for _, p := range []*int{&n.client, &n.internal, &n.controller} {
			if *p, err = servers.FreePort(); err != nil {
				return nil, err
			}
		}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	clusterID := clusterID()
	for _, n := range c.nodes {
		if err := os.WriteFile(filepath.Join(n.dir, "server.properties"), []byte(c.properties(n)), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(n.dir, "log4j2.properties"), []byte(log4jProperties(n.dir)), 0o644); err != nil {
			return nil, err
		}
		args := []string{"-cp", filepath.Join(home, "libs", "*"), "kafka.tools.StorageTool", "format",
			"-t", clusterID, "-c", filepath.Join(n.dir, "server.properties")}
		for _, user := range slices.Sorted(maps.Keys(cfg.SCRAMUsers)) {
			args = append(args, "--add-scram",
				fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", user, cfg.SCRAMUsers[user]))
		}
		err := servers.RunCommand(servers.ProcessConfig{
			Name: fmt.Sprintf("kafka storage format (node %d)", n.id), Path: java, Args: args,
			Dir: n.dir, Timeout: 2 * time.Minute,
		})
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// properties is the server.properties of node n.
func (c *Cluster) properties(n *node) string {
	var voters []string
	for _, o := range c.nodes {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", o.id, o.controller))
	}
	rf := min(3, len(c.nodes))
	props := map[string]string{
		"process.roles":                            "broker,controller",
		"node.id":                                  strconv.Itoa(n.id),
		"controller.quorum.voters":                 strings.Join(voters, ","),
		"listeners":                                fmt.Sprintf("CLIENT://127.0.0.1:%d,INTERNAL://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", n.client, n.internal, n.controller),
		"advertised.listeners":                     fmt.Sprintf("CLIENT://127.0.0.1:%d,INTERNAL://127.0.0.1:%d", n.client, n.internal),
		"listener.security.protocol.map":           "CLIENT:" + c.cfg.ClientProtocol + ",INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"controller.listener.names":                "CONTROLLER",
		"inter.broker.listener.name":               "INTERNAL",
		"log.dirs":                                 filepath.Join(n.dir, "data"),
		"offsets.topic.replication.factor":         strconv.Itoa(rf),
		"transaction.state.log.replication.factor": strconv.Itoa(rf),
		"transaction.state.log.min.isr":            "1",
		"default.replication.factor":               strconv.Itoa(rf),
		"group.initial.rebalance.delay.ms":         "0",
		"auto.create.topics.enable":                "false",
		"num.partitions":                           "4",
		// A killed node's partitions move quickly; tests wait on them.
		"broker.session.timeout.ms":    "6000",
		"broker.heartbeat.interval.ms": "1000",
	}
	if len(c.nodes) >= 3 {
		props["min.insync.replicas"] = "2"
	}
	for k, v := range c.cfg.Properties {
		props[k] = strings.ReplaceAll(v, "{dir}", n.dir)
	}
	var b strings.Builder
	b.WriteString("# A throwaway node of conformance/servers/kafkaserver.\n")
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	return b.String()
}

func log4jProperties(dir string) string {
	return `status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ` + filepath.Join(dir, "server.log") + `
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
`
}

// For returns the same cluster (the same nodes) whose methods report
// failures to t: subtests that share a cluster their parent started call its
// methods through For(t), since a subtest must not end its parent.
func (c *Cluster) For(t testing.TB) *Cluster {
	shared := *c
	shared.t = t
	return &shared
}

// Brokers returns the addresses of the tests' listener of every node, up or
// down; they stay the same across restarts.
func (c *Cluster) Brokers() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", n.client)
	}
	return addrs
}

// internalBrokers returns the PLAINTEXT inter-broker addresses, which the
// harness uses for administration whatever the client protocol.
func (c *Cluster) internalBrokers() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", n.internal)
	}
	return addrs
}

// AdminBrokers returns PLAINTEXT addresses of the cluster for setup and
// inspection (topics, configurations), whatever ClientProtocol is.
func (c *Cluster) AdminBrokers() []string { return c.internalBrokers() }

// Dir returns node i's directory (0-based): server.properties, server.log
// and data/.
func (c *Cluster) Dir(i int) string { return c.nodes[i].dir }

// NodeID returns node i's KRaft node.id (0-based i; ids start at 1).
func (c *Cluster) NodeID(i int) int { return c.nodes[i].id }

// Index returns the 0-based index of the node with KRaft node.id id, or -1.
func (c *Cluster) Index(id int32) int {
	for i, n := range c.nodes {
		if int32(n.id) == id {
			return i
		}
	}
	return -1
}

// Kill ends node i (0-based) with SIGKILL, as a crash would.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		n.proc.Kill()
		n.proc = nil
	}
}

// Stop shuts node i down gracefully (SIGTERM) and waits until it exited.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		if err := n.proc.Stop(); err != nil {
			c.t.Errorf("kafkaserver: %v", err)
		}
		n.proc = nil
	}
}

// Start starts node i again on its ports and data, and waits until it
// answers. Starting a running node does nothing.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	if err := c.start(c.nodes[i]); err != nil {
		c.t.Fatalf("kafkaserver: %v", err)
	}
}

// StopAll stops every node (SIGTERM, in parallel) and StartAll starts them
// again: a whole-cluster outage.
func (c *Cluster) StopAll() {
	c.t.Helper()
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// StartAll starts every stopped node, in parallel (a controller quorum
// needs a majority before any node is ready).
func (c *Cluster) StartAll() {
	c.t.Helper()
	if err := c.startAll(); err != nil {
		c.t.Fatalf("kafkaserver: %v", err)
	}
}

func (c *Cluster) startAll() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = c.start(n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.proc != nil {
				_ = n.proc.Stop()
				n.proc = nil
			}
		})
	}
	wg.Wait()
}

func (c *Cluster) start(n *node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return nil
	}
	ready := func(ctx context.Context) error {
		if c.cfg.Ready != nil {
			return c.cfg.Ready(ctx, n.id-1)
		}
		return brokerRegistered(ctx, fmt.Sprintf("127.0.0.1:%d", n.internal), int32(n.id))
	}
	proc, err := servers.StartProcess(servers.ProcessConfig{
		Name: fmt.Sprintf("kafka node %d", n.id),
		Path: c.java,
		Args: []string{
			"-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
			"-Dlog4j2.configurationFile=" + filepath.Join(n.dir, "log4j2.properties"),
			"-cp", filepath.Join(c.home, "libs", "*"),
			"kafka.Kafka", filepath.Join(n.dir, "server.properties"),
		},
		Dir:     n.dir,
		Addr:    fmt.Sprintf("127.0.0.1:%d", n.internal),
		Ready:   ready,
		Timeout: 2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("%w (log: %s)", err, filepath.Join(n.dir, "server.log"))
	}
	n.proc = proc
	return nil
}

// brokerRegistered reports nil once the broker at addr answers metadata
// requests and lists itself among the cluster's brokers.
func brokerRegistered(ctx context.Context, addr string, id int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	bs, err := adm.ListBrokers(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.NodeID == id {
			return nil
		}
	}
	return fmt.Errorf("broker %d not registered yet", id)
}

// startLocal starts the throwaway single node of Brokers when no cluster is
// named in the environment; Main stops it and removes its directory.
func startLocal() ([]string, error) {
	dir, err := servers.TempDir("kafka", "")
	if err != nil {
		return nil, err
	}
	c, err := newCluster(dir, ClusterConfig{Nodes: 1})
	if err != nil {
		return nil, err
	}
	// Its processes are stopped by Main, like every StartProcess.
	if err := c.startAll(); err != nil {
		return nil, err
	}
	return c.Brokers(), nil
}
