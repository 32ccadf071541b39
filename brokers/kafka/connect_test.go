package kafkapub_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

// testCert is a self-signed certificate for 127.0.0.1 and its PEM files.
type testCert struct {
	cert              tls.Certificate
	pool              *x509.CertPool
	certFile, keyFile string
}

func newTestCert(t *testing.T) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kfake"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tc := testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(tc.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if tc.cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	tc.pool = x509.NewCertPool()
	tc.pool.AppendCertsFromPEM(certPEM)
	return tc
}

// publishOne publishes one message to topic and returns its result.
func publishOne(t *testing.T, pub *kafkapub.Publisher, topic string) error {
	t.Helper()
	msgs := []outbox.Message{{Topic: topic, Key: "k", Payload: []byte("hello")}}
	prepare(t, msgs)
	return pub.Publish(testContext(t), msgs)[0]
}

// TestTLS publishes over TLS, with the configuration given as a struct and
// as a URL; a client that does not trust the broker's certificate gets
// ErrUnavailable, not a message failure.
func TestTLS(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t)
	tp := servers.Name(t, "outbox")
	brokers := kafkaserver.Fake(t,
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert.cert}, MinVersion: tls.VersionTLS12}),
		kfake.SeedTopics(testPartitions, tp),
	).ListenAddrs()

	t.Run("Config", func(t *testing.T) {
		t.Parallel()
		cfg := testDialConfig(brokers)
		cfg.TLS = &tls.Config{RootCAs: cert.pool, MinVersion: tls.VersionTLS12}
		if err := publishOne(t, dial(t, cfg), tp); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("URL", func(t *testing.T) {
		t.Parallel()
		cfg, err := kafkapub.ParseURL("kafka://" + brokers[0] + "?tls_ca=" + url.QueryEscape(cert.certFile) +
			"&tls_cert=" + url.QueryEscape(cert.certFile) + "&tls_key=" + url.QueryEscape(cert.keyFile) + "&delivery_timeout=4s")
		if err != nil {
			t.Fatal(err)
		}
		if err := publishOne(t, dial(t, cfg), tp); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("UntrustedCertificate", func(t *testing.T) {
		t.Parallel()
		cfg := testDialConfig(brokers)
		cfg.DeliveryTimeout = time.Second
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12} // the system's roots
		if err := publishOne(t, dial(t, cfg), tp); !errors.Is(err, outbox.ErrUnavailable) {
			t.Fatalf("result = %v; want ErrUnavailable", err)
		}
	})
}

// TestSASL publishes with each SASL mechanism, given as a struct and as a
// URL; wrong credentials get ErrUnavailable, not a message failure.
func TestSASL(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{kafkapub.SASLPlain, kafkapub.SASLScramSHA256, kafkapub.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			const user, password = "relay", "s3cret:/@?"
			tp := servers.Name(t, "outbox")
			brokers := kafkaserver.Fake(t, kfake.EnableSASL(), kfake.Superuser(mech, user, password), kfake.SeedTopics(testPartitions, tp)).ListenAddrs()

			cfg := testDialConfig(brokers)
			cfg.SASL = kafkapub.SASL{Mechanism: mech, User: user, Password: password}
			if err := publishOne(t, dial(t, cfg), tp); err != nil {
				t.Fatalf("with a DialConfig: %v", err)
			}

			u := "kafka://" + url.PathEscape(user) + ":" + url.PathEscape(password) + "@" + brokers[0] + "?sasl=" + mech
			fromURL, err := kafkapub.ParseURL(u)
			if err != nil {
				t.Fatal(err)
			}
			if err := publishOne(t, dial(t, fromURL), tp); err != nil {
				t.Fatalf("with a URL: %v", err)
			}

			cfg.SASL.Password = "wrong"
			cfg.DeliveryTimeout = time.Second
			if err := publishOne(t, dial(t, cfg), tp); !errors.Is(err, outbox.ErrUnavailable) {
				t.Fatalf("with a wrong password: %v; want ErrUnavailable", err)
			}
		})
	}
}

// TestPingAndClose: Ping reports a reachable cluster; Close closes a client
// Dial built and leaves a client given to New open; Publish after Close
// fails with ErrClosed.
func TestPingAndClose(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	brokers := fakeBrokers(t)
	tp := topic(t, brokers, 0)

	dialed := dial(t, testDialConfig(brokers))
	if err := dialed.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	dialed.Close()
	dialed.Close() // idempotent
	if err := dialed.Client().Ping(ctx); err == nil {
		t.Error("the client of a closed Dial publisher still answers")
	}
	if err := publishOne(t, dialed, tp); !errors.Is(err, kafkapub.ErrClosed) || !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("Publish after Close = %v; want ErrClosed and ErrUnavailable", err)
	}
	if err := dialed.Ping(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("Ping after Close = %v; want ErrUnavailable", err)
	}

	cl := newClient(t, testDialConfig(brokers))
	own, err := kafkapub.New(cl, kafkapub.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := publishOne(t, own, tp); err != nil {
		t.Fatal(err)
	}
	own.Close()
	if err := cl.Ping(ctx); err != nil {
		t.Errorf("Close closed a client given to New: %v", err)
	}
}
