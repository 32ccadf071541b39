package kafkapub

import (
	"fmt"
	"net/url"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// CloudEvents turns on the headers of the CloudEvents 1.0 Kafka protocol
// binding, binary content mode, for consumers that expect them: the
// message's payload stays the record's value, and each record gets
//
//	ce_specversion  "1.0"
//	ce_id           the message ID (as in the outbox-id header)
//	ce_source       Source
//	ce_type         the value of the message's TypeHeader header, or its
//	                Topic (the outbox topic, before Config.Topic maps it)
//	ce_time         its CreatedAt, RFC 3339 in UTC
//	content-type    the message's content-type header (any case), which
//	                the binding reads as datacontenttype
//
// Other headers travel as they are, so a writer can add CloudEvents
// extensions and optional attributes with the binding's names (ce_subject,
// ce_traceparent, ...). A message header with the name of one of the
// attributes above (any case) is replaced by the publisher's.
//
// The zero value is off; setting Source turns it on.
type CloudEvents struct {
	// Source is the ce_source attribute: a URI reference that names where
	// the events happen, e.g. "urn:app:orders" or "/orders". Required to
	// turn the headers on.
	Source string
	// TypeHeader names the message header (any case) whose value is the
	// ce_type attribute, e.g. "event-type". Default: none, and ce_type is
	// the message's Topic; a message without that header gets its Topic
	// too.
	TypeHeader string
}

// Header names of the Kafka protocol binding.
const (
	ceSpecVersion = "ce_specversion"
	ceID          = "ce_id"
	ceSource      = "ce_source"
	ceType        = "ce_type"
	ceTime        = "ce_time"
	ceContentType = "content-type"
)

// ceHeaders is how many headers CloudEvents adds at most beyond the
// message's own (content-type replaces the message's).
const ceHeaders = 5

var specVersion1 = []byte("1.0")

// validate reports what is wrong with c, as the field of Config it is.
func (c CloudEvents) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: kafkapub: Config.CloudEvents.%s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
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

// cloudEvents is a validated CloudEvents, ready to fill records.
type cloudEvents struct {
	source     []byte
	typeHeader string
}

// newCloudEvents returns the headers c describes, or nil when c is off.
func newCloudEvents(c CloudEvents) (*cloudEvents, error) {
	if err := c.validate(); err != nil || c.Source == "" {
		return nil, err
	}
	return &cloudEvents{source: []byte(c.Source), typeHeader: c.TypeHeader}, nil
}

// rename returns the record header name of the message header name: ""
// for one the publisher's attributes replace, "content-type" for a
// content-type of any case, name otherwise.
func (ce *cloudEvents) rename(name string) string {
	if len(name) < 5 || (name[0] != 'c' && name[0] != 'C') {
		return name
	}
	for _, attr := range [...]string{ceSpecVersion, ceID, ceSource, ceType, ceTime} {
		if strings.EqualFold(name, attr) {
			return ""
		}
	}
	if strings.EqualFold(name, ceContentType) {
		return ceContentType
	}
	return name
}

// eventType is the ce_type of m.
func (ce *cloudEvents) eventType(m outbox.Message) string {
	if ce.typeHeader != "" {
		if v, ok := m.Headers[ce.typeHeader]; ok {
			return v
		}
		for name, v := range m.Headers {
			if strings.EqualFold(name, ce.typeHeader) {
				return v
			}
		}
	}
	return m.Topic
}
