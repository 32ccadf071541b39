package kafkapub_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"

	kafkapub "github.com/txoutbox/txoutbox/brokers/kafka"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want kafkapub.DialConfig
	}{
		{"kafka://localhost:9092", kafkapub.DialConfig{Brokers: []string{"localhost:9092"}}},
		{"KAFKA://a,b:9093,[::1]:9094,[::1]/", kafkapub.DialConfig{Brokers: []string{"a:9092", "b:9093", "[::1]:9094", "[::1]:9092"}}},
		{"kafka://u%40corp:p%3Ass@h:1?sasl=scram-sha-512", kafkapub.DialConfig{
			Brokers: []string{"h:1"},
			SASL:    kafkapub.SASL{Mechanism: "scram-sha-512", User: "u@corp", Password: "p:ss"},
		}},
		{"kafka://h:1?sasl=PLAIN&user=relay&password=pw&client_id=svc&delivery_timeout=3s&max_message_bytes=65536&linger=5ms", kafkapub.DialConfig{
			Brokers:         []string{"h:1"},
			SASL:            kafkapub.SASL{Mechanism: "PLAIN", User: "relay", Password: "pw"},
			ClientID:        "svc",
			DeliveryTimeout: 3 * time.Second,
			MaxMessageBytes: 65536,
			Linger:          5 * time.Millisecond,
		}},
	}
	for _, tc := range tests {
		got, err := kafkapub.ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		if !slices.Equal(got.Brokers, tc.want.Brokers) || got.SASL != tc.want.SASL || got.ClientID != tc.want.ClientID ||
			got.DeliveryTimeout != tc.want.DeliveryTimeout || got.MaxMessageBytes != tc.want.MaxMessageBytes ||
			got.Linger != tc.want.Linger || got.TLS != nil {
			t.Errorf("ParseURL(%q) = %+v; want %+v", tc.url, got, tc.want)
		}
	}

	cfg, err := kafkapub.ParseURL("kafka://h:1?tls=true&tls_server_name=kafka.internal")
	if err != nil || cfg.TLS == nil || cfg.TLS.ServerName != "kafka.internal" || cfg.TLS.InsecureSkipVerify {
		t.Errorf("tls parameters: %+v, %v", cfg.TLS, err)
	}
	if cfg, err := kafkapub.ParseURL("kafka://h:1?tls_insecure_skip_verify=true"); err != nil || cfg.TLS == nil || !cfg.TLS.InsecureSkipVerify {
		t.Errorf("tls_insecure_skip_verify implies tls: %+v, %v", cfg.TLS, err)
	}
}

func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"",
		"localhost:9092",
		"http://localhost:9092",
		"kafka://",
		"kafka://a,,b",
		"kafka://a:b:c",
		"kafka://a:0",
		"kafka://a:99999",
		"kafka://a?tls=maybe",
		"kafka://a?sasl=gssapi&user=u&password=p",
		"kafka://a?sasl=plain&user=u",      // no password
		"kafka://u:secret-pw@a",            // credentials without a mechanism
		"kafka://a?linger=-1s",             // negative
		"kafka://a?delivery_timeout=100ms", // below kgo's minimum
		"kafka://a?max_message_bytes=10",   // below kgo's minimum
		"kafka://a?tls_ca=/does/not/exist.pem",
		"kafka://a?tls_cert=/only/the/cert.pem",
		"kafka://a?timeout=5s", // unknown parameter
		"kafka://a?password=%zz",
	} {
		_, err := kafkapub.ParseURL(u)
		if !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("ParseURL(%q) = %v; want ErrInvalidConfig", u, err)
			continue
		}
		if strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("ParseURL(%q) leaks the password: %v", u, err)
		}
	}
}

func TestDialConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]kafkapub.DialConfig{
		"no brokers":       {},
		"empty broker":     {Brokers: []string{""}},
		"list in one":      {Brokers: []string{"a:1,b:2"}},
		"delivery timeout": {Brokers: []string{"a:1"}, DeliveryTimeout: 10 * time.Millisecond},
		"negative linger":  {Brokers: []string{"a:1"}, Linger: -time.Second},
		"max bytes":        {Brokers: []string{"a:1"}, MaxMessageBytes: 1 << 31},
		"mechanism":        {Brokers: []string{"a:1"}, SASL: kafkapub.SASL{Mechanism: "OAUTHBEARER", User: "u", Password: "p"}},
		"no mechanism":     {Brokers: []string{"a:1"}, SASL: kafkapub.SASL{User: "u"}},
		"no password":      {Brokers: []string{"a:1"}, SASL: kafkapub.SASL{Mechanism: "scram-sha-256", User: "u"}},
	} {
		if _, err := kafkapub.Dial(cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: Dial = %v; want ErrInvalidConfig", name, err)
		}
		if _, err := cfg.ClientOptions(); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: ClientOptions = %v; want ErrInvalidConfig", name, err)
		}
	}
}

// TestNewRefusesUnsafeClients: New refuses clients whose settings would
// break its promises, with an error that says what to change.
func TestNewRefusesUnsafeClients(t *testing.T) {
	t.Parallel()
	if _, err := kafkapub.New(nil, kafkapub.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("New(nil) = %v; want ErrInvalidConfig", err)
	}
	for name, tc := range map[string]struct {
		opts []kgo.Opt
		says string
	}{
		"leader acks":    {[]kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}, "AllISRAcks"},
		"manual flushes": {[]kgo.Opt{kgo.ManualFlushing()}, "ManualFlushing"},
		"transactional":  {[]kgo.Opt{kgo.TransactionalID("tx")}, "TransactionalID"},
	} {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, tc.opts...)...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = kafkapub.New(cl, kafkapub.Config{})
		cl.Close()
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: New = %v; want ErrInvalidConfig naming %s", name, err, tc.says)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafkapub.New(cl, kafkapub.Config{}); err != nil {
		t.Errorf("New refuses a client with kgo's defaults: %v", err)
	}
}
