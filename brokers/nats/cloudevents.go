package natspub

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// CloudEvents turns on the headers of the CloudEvents 1.0 NATS protocol
// binding, binary content mode, for consumers that expect them: the
// message's payload stays the NATS message's data, and each message gets
//
//	ce-specversion      "1.0"
//	ce-id               the message ID (as in Nats-Msg-Id)
//	ce-source           Source
//	ce-type             the value of the message's TypeHeader header, or
//	                    its Topic (the outbox topic, before Config.Subject
//	                    maps it)
//	ce-time             its CreatedAt, RFC 3339 in UTC
//	ce-datacontenttype  the message's content-type header (any case),
//	                    which stays as it is too
//
// The NATS binding prefixes every attribute with "ce-" (the Kafka binding
// uses "ce_"), and percent-encodes the values' spaces, double quotes,
// percent signs and non-ASCII characters, as this publisher does. Other
// headers travel as they are, so a writer can add CloudEvents extensions
// and optional attributes with the binding's names (ce-subject, ...). A
// message header with the name of one of the attributes above (any case)
// is replaced by the publisher's.
//
// The zero value is off; setting Source turns it on.
type CloudEvents struct {
	// Source is the ce-source attribute: a URI reference that names where
	// the events happen, e.g. "urn:app:orders" or "/orders". Required to
	// turn the headers on.
	Source string
	// TypeHeader names the message header (any case) whose value is the
	// ce-type attribute, e.g. "event-type". Default: none, and ce-type is
	// the message's Topic; a message without that header gets its Topic
	// too.
	TypeHeader string
}

// Header names of the NATS protocol binding.
const (
	ceSpecVersion     = "ce-specversion"
	ceID              = "ce-id"
	ceSource          = "ce-source"
	ceType            = "ce-type"
	ceTime            = "ce-time"
	ceDataContentType = "ce-datacontenttype"
)

// ceHeaders is how many headers CloudEvents adds at most.
const ceHeaders = 6

// validate reports what is wrong with c, as the field of Config it is.
func (c CloudEvents) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: natspub: Config.CloudEvents.%s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Source == "" {
		if c.TypeHeader != "" {
			return bad("TypeHeader is set but Source is empty; set Source (a URI such as urn:app:orders) to turn CloudEvents headers on")
		}
		return nil
	}
	if why := checkSource(c.Source); why != "" {
		return bad("Source %q %s", c.Source, why)
	}
	return nil
}

// checkSource says what is wrong with a source, or "" when it is a URI
// reference.
func checkSource(source string) string {
	if strings.ContainsFunc(source, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "has white space or a control character; it must be a URI reference such as urn:app:orders"
	}
	if _, err := url.Parse(source); err != nil {
		return fmt.Sprintf("is not a URI reference: %v", err)
	}
	return ""
}

// on reports whether c adds headers.
func (c CloudEvents) on() bool { return c.Source != "" }

// replaced reports whether the message header name is one of the
// attributes the publisher sets.
func (c CloudEvents) replaced(name string) bool {
	if len(name) < 5 || (name[0] != 'c' && name[0] != 'C') {
		return false
	}
	for _, attr := range [...]string{ceSpecVersion, ceID, ceSource, ceType, ceTime, ceDataContentType} {
		if strings.EqualFold(name, attr) {
			return true
		}
	}
	return false
}

// header returns the value of m's header name, matched in any case.
func header(m *outbox.Message, name string) (string, bool) {
	if v, ok := m.Headers[name]; ok {
		return v, true
	}
	for k, v := range m.Headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// attributes calls set for each attribute header of m, values encoded.
func (c CloudEvents) attributes(m *outbox.Message, set func(name, value string)) {
	set(ceSpecVersion, "1.0")
	set(ceID, m.ID)
	set(ceSource, percentEncode(c.Source))
	eventType := m.Topic
	if c.TypeHeader != "" {
		if v, ok := header(m, c.TypeHeader); ok {
			eventType = v
		}
	}
	set(ceType, percentEncode(eventType))
	if !m.CreatedAt.IsZero() {
		set(ceTime, m.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	if v, ok := header(m, "content-type"); ok {
		set(ceDataContentType, percentEncode(v))
	}
}

// percentEncode encodes s as the NATS binding wants header values: space,
// double quote, percent and every byte outside printable ASCII as %XX.
func percentEncode(s string) string {
	plain := func(c byte) bool { return c > ' ' && c < 0x7f && c != '"' && c != '%' }
	i := 0
	for i < len(s) && plain(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, i, len(s)+16)
	copy(b, s[:i])
	for ; i < len(s); i++ {
		if c := s[i]; plain(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}
