package kafkapub

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// DefaultPort is the broker port ParseURL assumes for a host without one.
const DefaultPort = "9092"

// ParseURL returns the [DialConfig] a URL describes:
//
//	kafka://[user[:password]@]host[:port][,host[:port]...][?param=value&...]
//
// Hosts without a port use DefaultPort. The user and password may also be
// given as parameters; percent-encode them in either place. Parameters:
//
//	tls                       true to use TLS (implied by the tls_ parameters)
//	tls_ca                    PEM file of the authorities to trust, instead of the system's
//	tls_cert, tls_key         PEM files of a client certificate and its key
//	tls_server_name           name to verify the brokers' certificates against
//	tls_insecure_skip_verify  true to accept any certificate (tests only)
//	sasl                      plain, scram-sha-256 or scram-sha-512
//	user, password            SASL credentials
//	client_id                 DialConfig.ClientID
//	delivery_timeout          DialConfig.DeliveryTimeout, e.g. 10s
//	max_message_bytes         DialConfig.MaxMessageBytes
//	linger                    DialConfig.Linger, e.g. 5ms
//	cloudevents_source        Config.CloudEvents.Source: CloudEvents headers on
//	cloudevents_type_header   Config.CloudEvents.TypeHeader
//
// An unknown parameter is an error, so that a misspelt one is not silently
// ignored. Errors match [outbox.ErrInvalidConfig] and never contain the
// password. ParseURL reads the tls_ files; it does not contact the brokers.
func ParseURL(s string) (DialConfig, error) {
	var cfg DialConfig
	bad := func(format string, args ...any) (DialConfig, error) {
		return DialConfig{}, fmt.Errorf("%w: kafkapub: URL: %s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	const scheme = "kafka://"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return bad("want kafka://host:port[,host:port...][?params]")
	}
	rest := s[len(scheme):]
	rest, rawQuery, _ := strings.Cut(rest, "?")
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo := rest[:at]
		rest = rest[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if cfg.SASL.User, err = url.PathUnescape(user); err != nil {
			return bad("the user is not percent-encoded properly")
		}
		if hasPass {
			if cfg.SASL.Password, err = url.PathUnescape(pass); err != nil {
				return bad("the password is not percent-encoded properly")
			}
		}
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return bad("no broker; want kafka://host:port")
	}
	for _, h := range strings.Split(rest, ",") {
		if h == "" {
			return bad("empty broker in %q", rest)
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = h, DefaultPort
			if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
				return bad("broker %q is not host:port", h)
			}
			host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" || strings.ContainsAny(host, "/ ") {
			return bad("broker %q is not host:port", h)
		}
		cfg.Brokers = append(cfg.Brokers, net.JoinHostPort(host, port))
	}

	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return bad("the parameters are not a valid query string")
	}
	var useTLS bool
	var caFile, certFile, keyFile, serverName string
	var insecure bool
	for name, values := range query {
		v := values[len(values)-1]
		var err error
		switch name {
		case "tls":
			useTLS, err = strconv.ParseBool(v)
		case "tls_ca":
			caFile = v
		case "tls_cert":
			certFile = v
		case "tls_key":
			keyFile = v
		case "tls_server_name":
			serverName = v
		case "tls_insecure_skip_verify":
			insecure, err = strconv.ParseBool(v)
		case "sasl":
			cfg.SASL.Mechanism = v
		case "user":
			cfg.SASL.User = v
		case "password":
			cfg.SASL.Password = v
		case "client_id":
			cfg.ClientID = v
		case "delivery_timeout":
			cfg.DeliveryTimeout, err = time.ParseDuration(v)
		case "max_message_bytes":
			cfg.MaxMessageBytes, err = strconv.Atoi(v)
		case "linger":
			cfg.Linger, err = time.ParseDuration(v)
		case "cloudevents_source":
			cfg.CloudEvents.Source = v
		case "cloudevents_type_header":
			cfg.CloudEvents.TypeHeader = v
		default:
			return bad("unknown parameter %q", name)
		}
		if err != nil {
			if name == "password" {
				return bad("bad password parameter")
			}
			return bad("parameter %s=%q: %v", name, v, err)
		}
	}
	if caFile != "" || certFile != "" || keyFile != "" || serverName != "" || insecure {
		useTLS = true
	}
	if useTLS {
		cfg.TLS = &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return bad("tls_ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return bad("tls_ca: %s holds no PEM certificate", caFile)
			}
			cfg.TLS.RootCAs = pool
		}
		if (certFile == "") != (keyFile == "") {
			return bad("tls_cert and tls_key go together")
		}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return bad("tls_cert/tls_key: %v", err)
			}
			cfg.TLS.Certificates = []tls.Certificate{cert}
		}
	}
	if ce := cfg.CloudEvents; ce.TypeHeader != "" && ce.Source == "" {
		return bad("cloudevents_type_header is given without cloudevents_source, which turns CloudEvents headers on (a URI such as urn:app:orders)")
	} else if why := checkSource(ce.Source); ce.Source != "" && why != "" {
		return bad("cloudevents_source=%q %s", ce.Source, why)
	}
	// The rest (SASL completeness, ranges) is checked the way Dial checks
	// it, so that the URL and the struct cannot disagree.
	if _, err := cfg.withDefaults(); err != nil {
		return DialConfig{}, err
	}
	return cfg, nil
}
