package natspub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/txoutbox/txoutbox/conformance/servers"
	outbox "github.com/txoutbox/txoutbox/core"
)

func TestParseURL(t *testing.T) {
	conn, cfg, err := ParseURL("nats://alice:secret@a:4222,nats://b:4222?creds=/etc/u.creds&tls_ca=/etc/ca.pem&name=relay-1" +
		"&subject_prefix=prod&max_in_flight=64&ack_timeout=3s&create_streams=true")
	if err != nil {
		t.Fatal(err)
	}
	want := Connection{URL: "nats://alice:secret@a:4222,nats://b:4222", CredsFile: "/etc/u.creds", TLSCAFile: "/etc/ca.pem", Name: "relay-1"}
	if conn.URL != want.URL || conn.CredsFile != want.CredsFile || conn.TLSCAFile != want.TLSCAFile || conn.Name != want.Name {
		t.Errorf("Connection = %+v; want %+v", conn, want)
	}
	if cfg.MaxInFlight != 64 || cfg.AckTimeout != 3*time.Second || !cfg.CreateStreams || cfg.Subject == nil {
		t.Errorf("Config = %+v", cfg)
	}
	if got := cfg.Subject(outbox.Message{Topic: "orders.created"}); got != "prod.orders.created" {
		t.Errorf("subject_prefix maps orders.created to %q", got)
	}

	conn, cfg, err = ParseURL("tls://h:4222?nkey=/s/user.nk&tls_cert=c.pem&tls_key=k.pem")
	if err != nil || conn.NKeySeedFile != "/s/user.nk" || conn.TLSCertFile != "c.pem" || conn.TLSKeyFile != "k.pem" || cfg.Subject != nil {
		t.Errorf("ParseURL(tls with nkey) = %+v, %+v, %v", conn, cfg, err)
	}

	for _, bad := range []string{
		"",
		"http://h:4222",
		"nats://",
		"nats://h:4222?unknown=1",
		"nats://h:4222?max_in_flight=0",
		"nats://h:4222?max_in_flight=many",
		"nats://h:4222?ack_timeout=10",
		"nats://h:4222?create_streams=maybe",
		"nats://h:4222?subject_prefix=a.*",
		"nats://h:4222?creds=a&token=b",
		"nats://h:4222?tls_cert=c.pem",
		"nats://h:4222?name=a&name=b",
		"nats://h:4222/path",
	} {
		if _, _, err := ParseURL(bad); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("ParseURL(%q) = %v; want ErrInvalidConfig", bad, err)
		}
	}
	_, _, err = ParseURL("nats://alice:secret@h:4222?token=hunter2&bogus=1")
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("ParseURL error %q shows a secret", err)
	}
}

func TestConnectionValidation(t *testing.T) {
	ctx := context.Background()
	for name, conn := range map[string]Connection{
		"URL":          {},
		"authenticate": {URL: "nats://127.0.0.1:1", Token: "t", User: "u"},
		"TLSCertFile":  {URL: "nats://127.0.0.1:1", TLSKeyFile: "k.pem"},
		"NKeySeedFile": {URL: "nats://127.0.0.1:1", NKeySeedFile: filepath.Join(t.TempDir(), "missing.nk")},
	} {
		if _, err := Connect(ctx, conn, Config{}); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("Connect with a bad %s = %v; want ErrInvalidConfig naming it", name, err)
		}
	}
	if _, err := Connect(ctx, Connection{URL: "nats://127.0.0.1:1"}, Config{MaxInFlight: -1}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("Connect with a bad Config = %v; want ErrInvalidConfig", err)
	}
}

// TestConnectAuthenticatesAndEncrypts runs a nats-server that requires TLS
// and knows a user with a password and a user with an NKey, and one that
// takes a token, and publishes through each way Connect authenticates.
func TestConnectAuthenticatesAndEncrypts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := writeCertificates(t, dir)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	public, _ := user.PublicKey()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	tlsURL := startServer(t, fmt.Sprintf(`
tls { cert_file: %q, key_file: %q }
authorization { users: [ { user: alice, password: wonderland }, { nkey: %s } ] }
`, cert, key, public))
	tokenURL := startServer(t, `authorization { token: "s3cret" }`)

	for name, conn := range map[string]Connection{
		"password": {URL: tlsURL, TLSCAFile: ca, User: "alice", Password: "wonderland"},
		"nkey":     {URL: tlsURL, TLSCAFile: ca, NKeySeedFile: seedFile},
		"token":    {URL: tokenURL, Token: "s3cret"},
		"url":      {URL: strings.Replace(tokenURL, "nats://", "nats://s3cret@", 1)},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			pub, err := Connect(ctx, conn, Config{Logger: discardLogger(), CreateStreams: true})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			if err := pub.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			subject := servers.Name(t, "auth") + ".hello"
			if res := pub.Publish(ctx, prepared(t, outbox.Message{Topic: subject, Key: "k"})); res[0] != nil {
				t.Fatalf("Publish: %v", res[0])
			}
			token, _, _ := strings.Cut(subject, ".")
			_ = pub.JetStream().DeleteStream(ctx, token)
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		ctx := testContext(t)
		conn := Connection{URL: tlsURL, TLSCAFile: ca, User: "alice", Password: "guess", Options: quickReconnect}
		pub, err := Connect(ctx, conn, Config{Logger: discardLogger()})
		if err != nil {
			t.Fatalf("Connect: %v (a refused login is retried like an outage)", err)
		}
		defer pub.Close()
		// The first attempt's error is not kept; the retries' are.
		var res []error
		eventually(t, ctx, "the authorization failure to show in Publish's error", func() bool {
			res = pub.Publish(ctx, prepared(t, outbox.Message{Topic: "any.subject"}))
			if !errors.Is(res[0], outbox.ErrUnavailable) {
				t.Fatalf("Publish = %v; want ErrUnavailable", res[0])
			}
			return strings.Contains(strings.ToLower(res[0].Error()), "authorization")
		})
		// Once the server has said why, the error is ErrAccessDenied too,
		// from Publish and from Ping.
		if !errors.Is(res[0], outbox.ErrAccessDenied) {
			t.Errorf("Publish = %v; want ErrAccessDenied as well", res[0])
		}
		// Ping reads the connection's last error, which the client clears
		// for a moment at each reconnection attempt: ask until it carries
		// the server's answer again.
		eventually(t, ctx, "Ping to report the refused login", func() bool {
			err := pub.Ping(ctx)
			if !errors.Is(err, outbox.ErrUnavailable) {
				t.Fatalf("Ping = %v; want ErrUnavailable", err)
			}
			return errors.Is(err, outbox.ErrAccessDenied)
		})
	})
}

func TestConnectToJetStreamlessServer(t *testing.T) {
	t.Parallel()
	url := startServerArgs(t, nil, false)
	_, err := Connect(testContext(t), Connection{URL: url}, Config{Logger: discardLogger()})
	if !errors.Is(err, outbox.ErrUnsupported) {
		t.Fatalf("Connect to a server without JetStream = %v; want ErrUnsupported", err)
	}
}

// startServer starts a throwaway nats-server with JetStream and the given
// configuration, stopped when t ends, and returns its URL.
func startServer(t *testing.T, config string) string {
	t.Helper()
	return startServerArgs(t, &config, true)
}

func startServerArgs(t *testing.T, config *string, jetStream bool) string {
	t.Helper()
	bin, err := servers.FindBinary([]string{"nats-server"}, "/usr/sbin", "/usr/local/bin", "/usr/bin")
	if err != nil {
		servers.Unavailable(t, servers.NATS, err.Error())
	}
	port, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}
	if jetStream {
		args = append(args, "-js", "-sd", dir)
	}
	if config != nil {
		file := filepath.Join(dir, "server.conf")
		if err := os.WriteFile(file, []byte(*config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-c", file)
	}
	proc, err := servers.StartProcess(servers.ProcessConfig{
		Name: "nats-server", Path: bin, Args: args, Dir: dir,
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop() })
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// writeCertificates writes a CA and a server certificate for 127.0.0.1
// signed by it, as PEM files in dir.
func writeCertificates(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "txoutbox test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}
