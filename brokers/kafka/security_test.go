package kafkapub_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// The SCRAM-SHA-512 credentials of the secure cluster.
const scramUser, scramPassword = "relay", "relay-secret-42"

// testCA is a certificate authority made by a test, and the broker
// certificate it signed for 127.0.0.1 and localhost, as PEM files in the
// layout Kafka 4 reads (ssl.keystore.type=PEM).
type testCA struct {
	// caFile holds the authority's certificate: the clients' tls_ca and
	// the broker's trust store.
	caFile string
	// keystoreFile holds the broker's unencrypted PKCS#8 private key
	// followed by its certificate chain (broker, then authority).
	keystoreFile string
}

// newTestCA makes an authority named name and a broker certificate it
// signed, in a directory of the test's own.
func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	// Kafka's PEM key store reads PKCS#8 only ("BEGIN PRIVATE KEY").
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	ca := testCA{caFile: filepath.Join(dir, "ca.pem"), keystoreFile: filepath.Join(dir, "broker.pem")}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	keystore := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	keystore = append(keystore, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	keystore = append(keystore, caPEM...)
	if err := os.WriteFile(ca.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.keystoreFile, keystore, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// secureClusterConfig is a one-node cluster whose client listener takes
// SASL_SSL only: TLS with ca's broker certificate, then SCRAM-SHA-512 with
// the credentials of scramUser. The test's own setup goes through the
// PLAINTEXT listener between brokers (AdminBrokers).
func secureClusterConfig(ca testCA) kafkaserver.ClusterConfig {
	return kafkaserver.ClusterConfig{
		Nodes:          1,
		ClientProtocol: "SASL_SSL",
		SCRAMUsers:     map[string]string{scramUser: scramPassword},
		Properties: map[string]string{
			"listener.name.client.ssl.keystore.type":              "PEM",
			"listener.name.client.ssl.keystore.location":          ca.keystoreFile,
			"listener.name.client.ssl.truststore.type":            "PEM",
			"listener.name.client.ssl.truststore.location":        ca.caFile,
			"listener.name.client.sasl.enabled.mechanisms":        "SCRAM-SHA-512",
			"listener.name.client.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
		},
	}
}

// secureURL is the broker URL of the outbox command for the cluster: TLS
// trusting caFile, SCRAM-SHA-512 with user and password.
func secureURL(broker, caFile, user, password string) string {
	return fmt.Sprintf("kafka://%s?tls_ca=%s&sasl=scram-sha-512&user=%s&password=%s&delivery_timeout=2s",
		broker, url.QueryEscape(caFile), url.QueryEscape(user), url.QueryEscape(password))
}

// dialURL returns a publisher from ParseURL and Dial, closed when t ends.
func dialURL(t *testing.T, u string) *kafkapub.Publisher {
	t.Helper()
	cfg, err := kafkapub.ParseURL(u)
	if err != nil {
		t.Fatalf("ParseURL: %v", err)
	}
	cfg.MaxMessageBytes = testMaxMessageBytes
	return dial(t, cfg)
}

// TestTLSAndSCRAMKafka runs the publisher against a real broker whose
// client listener takes TLS with a certificate of the test's own authority
// and SCRAM-SHA-512 (SASL_SSL), configured from a URL as the outbox command
// does: the relay delivers. A wrong password, an authority the client does
// not trust, a certificate for another name, a client without TLS and one
// without SASL all fail as the broker being unavailable (the relay keeps
// the messages and pauses instead of counting attempts), each with an
// error that says what is wrong; the wrong password also matches
// outbox.ErrAccessDenied, and the relay logs it as refused access.
func TestTLSAndSCRAMKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka node with TLS and SASL (tens of seconds); skipped with -short")
	}
	t.Parallel()
	ca := newTestCA(t, "txoutbox test CA")
	c := kafkaserver.StartCluster(t, secureClusterConfig(ca))
	broker, admin := c.Brokers()[0], c.AdminBrokers()

	t.Run("RelayDelivers", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		tp := topic(t, admin, 0)
		fx := newDeliveryFixture(t, ctx, admin, tp)
		pub := dialURL(t, secureURL(broker, ca.caFile, scramUser, scramPassword))
		if err := pub.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		conformance.StartRelay(t, fx.store, pub, conformance.TestRelayConfig(t))
		writeKeys(t, ctx, fx.ob, fx.ledger, tp, 10, 200, "secure")
		fx.checkDelivered(t, ctx)
	})

	t.Run("WrongPassword", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		tp := topic(t, admin, 0)
		const wrong = "not-the-password"
		pub := dialURL(t, secureURL(broker, ca.caFile, scramUser, wrong))
		err := publishOne(t, pub, tp)
		checkUnavailable(t, "a wrong password", err, "SASL_AUTHENTICATION_FAILED", "invalid credentials")
		pingErr := pub.Ping(ctx)
		checkUnavailable(t, "a wrong password (Ping)", pingErr, "SASL_AUTHENTICATION_FAILED", "invalid credentials")
		for what, err := range map[string]error{"Publish": err, "Ping": pingErr} {
			if !errors.Is(err, outbox.ErrAccessDenied) {
				t.Errorf("%s with a wrong password: %v; want it to match outbox.ErrAccessDenied too", what, err)
			}
		}
		if err != nil && strings.Contains(err.Error(), wrong) {
			t.Errorf("the error shows the password: %v", err)
		}

		// The relay keeps the messages while the credentials are wrong,
		// and a relay with the right ones delivers every one of them.
		fx := newDeliveryFixture(t, ctx, admin, tp)
		logs := newLogCapture()
		cfg := conformance.TestRelayConfig(t)
		cfg.Logger = slog.New(logs)
		stop := conformance.StartRelay(t, fx.store, pub, cfg)
		writeKeys(t, ctx, fx.ob, fx.ledger, tp, 5, 50, "held")
		eventually(t, ctx, "the relay to report the refused credentials", func() bool {
			return logs.count("the broker refused access") > 0 && logs.count("SASL_AUTHENTICATION_FAILED") > 0
		})
		stop()
		if d := fx.delivered(); d != 0 {
			t.Fatalf("%d messages delivered with a wrong password", d)
		}
		checkNoDeadLetters(t, ctx, fx.store)
		conformance.StartRelay(t, fx.store, dialURL(t, secureURL(broker, ca.caFile, scramUser, scramPassword)), conformance.TestRelayConfig(t))
		fx.checkDelivered(t, ctx)
	})

	t.Run("UntrustedAuthority", func(t *testing.T) {
		t.Parallel()
		tp := topic(t, admin, 0)
		other := newTestCA(t, "another CA")
		err := publishOne(t, dialURL(t, secureURL(broker, other.caFile, scramUser, scramPassword)), tp)
		checkUnavailable(t, "an untrusted broker certificate", err, "x509", "unknown authority")
	})

	t.Run("PlainTCP", func(t *testing.T) {
		t.Parallel()
		tp := topic(t, admin, 0)
		cfg := testDialConfig([]string{broker})
		cfg.DeliveryTimeout = 2 * time.Second
		cfg.SASL = kafkapub.SASL{Mechanism: kafkapub.SASLScramSHA512, User: scramUser, Password: scramPassword}
		checkUnavailable(t, "a client without TLS", publishOne(t, dial(t, cfg), tp), "tls endpoint")
	})

	t.Run("NoSASL", func(t *testing.T) {
		t.Parallel()
		tp := topic(t, admin, 0)
		u := fmt.Sprintf("kafka://%s?tls_ca=%s&delivery_timeout=2s", broker, url.QueryEscape(ca.caFile))
		checkUnavailable(t, "a client without SASL", publishOne(t, dialURL(t, u), tp), "SASL")
	})

	t.Run("WrongServerName", func(t *testing.T) {
		t.Parallel()
		tp := topic(t, admin, 0)
		u := secureURL(broker, ca.caFile, scramUser, scramPassword) + "&tls_server_name=kafka.example.com"
		checkUnavailable(t, "a certificate for another name", publishOne(t, dialURL(t, u), tp), "x509", "kafka.example.com")
	})
}

// checkUnavailable checks that err, the result of a publish under what,
// matches outbox.ErrUnavailable (the relay pauses instead of counting
// attempts) and contains every one of want.
func checkUnavailable(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	t.Logf("with %s: %v", what, err)
	if !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("with %s: %v; want an error matching outbox.ErrUnavailable", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("with %s: %v; want it to say %q", what, err, w)
		}
	}
}
