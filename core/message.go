package outbox

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one event written to the outbox and published to a broker.
type Message struct {
	// ID identifies the message downstream: it travels as a header (Kafka)
	// or as Nats-Msg-Id (NATS), so consumers and brokers can drop the
	// duplicates at-least-once delivery allows. Enqueue assigns a UUIDv7
	// ([NewID]) when it is empty; a caller that sets it must use a UUID.
	ID string
	// Topic is the Kafka topic or NATS subject. Required.
	Topic string
	// Key orders messages: messages with the same key reach the broker in
	// the order they were written. It is also the Kafka partition key. An
	// empty key means the message is not ordered relative to any other.
	Key string
	// Payload is the message body, at most [Limits.MaxPayloadBytes] long.
	Payload []byte
	// Headers travel with the message. Names are HTTP tokens (letters,
	// digits and !#$%&'*+-.^_`|~), at most 255 bytes; values hold no line
	// breaks. Names starting with "outbox-" or "nats-" (any case) are
	// reserved for the adapters.
	Headers map[string]string
	// CreatedAt is when the message was enqueued. Enqueue sets it when it
	// is zero. Relays measure the commit-to-publish lag from it.
	CreatedAt time.Time
}

// Size limits that hold whatever [Limits] say, so that every store can index
// the values.
const (
	// MaxTopicBytes is the longest topic accepted.
	MaxTopicBytes = 249
	// MaxKeyBytes is the longest key accepted.
	MaxKeyBytes = 255
	// MaxHeaderNameBytes is the longest header name accepted.
	MaxHeaderNameBytes = 255
	// DefaultMaxPayloadBytes is the default for [Limits.MaxPayloadBytes]: 1 MiB.
	DefaultMaxPayloadBytes = 1 << 20
)

// Limits bound what Enqueue accepts. The zero value is the default.
type Limits struct {
	// MaxPayloadBytes is the largest payload accepted. Zero means
	// DefaultMaxPayloadBytes (1 MiB); set it at or below what your broker
	// accepts (Kafka's max.message.bytes, NATS max_payload) so an oversized
	// message fails in the writing transaction, not later in the relay.
	MaxPayloadBytes int
}

func (l Limits) maxPayload() int {
	if l.MaxPayloadBytes <= 0 {
		return DefaultMaxPayloadBytes
	}
	return l.MaxPayloadBytes
}

// Prepare readies messages for an Enqueue: it assigns an ID ([NewID]) to
// each message without one, normalizes IDs to lowercase, sets a zero
// CreatedAt to now (UTC, truncated to microseconds; stores keep at least
// milliseconds), and validates every message against limits. It changes the
// elements of msgs in place, so a caller can read the assigned IDs after
// Enqueue. The first invalid message stops it with a [*ValidationError].
//
// Store adapters call Prepare at the start of Enqueue, before touching the
// caller's transaction.
func Prepare(msgs []Message, limits Limits) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i := range msgs {
		m := &msgs[i]
		if m.ID == "" {
			m.ID = NewID()
		} else {
			m.ID = strings.ToLower(m.ID)
		}
		if m.CreatedAt.IsZero() {
			m.CreatedAt = now
		}
		if err := m.validate(limits); err != nil {
			err.Index = i
			return err
		}
	}
	return nil
}

// Validate checks m against limits without changing it. An empty ID is an
// error here ([ErrMissingID]); use [Prepare] to fill it in.
func (m *Message) Validate(limits Limits) error {
	if err := m.validate(limits); err != nil {
		return err
	}
	return nil
}

func (m *Message) validate(limits Limits) *ValidationError {
	bad := func(sentinel error, format string, args ...any) *ValidationError {
		return &ValidationError{ID: m.ID, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
	}
	if m.ID == "" {
		return bad(ErrMissingID, "set an ID or leave it to Enqueue")
	}
	if _, ok := parseUUID(m.ID); !ok {
		return bad(ErrInvalidID, "%q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", m.ID)
	}
	if m.Topic == "" {
		return bad(ErrMissingTopic, "every message needs a topic (Kafka topic or NATS subject)")
	}
	if len(m.Topic) > MaxTopicBytes {
		return bad(ErrInvalidTopic, "topic is %d bytes, the limit is %d", len(m.Topic), MaxTopicBytes)
	}
	for i, r := range m.Topic {
		if r == utf8.RuneError || r <= ' ' || r == 0x7f {
			return bad(ErrInvalidTopic, "topic %q has a space, control or invalid UTF-8 character at byte %d", m.Topic, i)
		}
	}
	if len(m.Key) > MaxKeyBytes {
		return bad(ErrInvalidKey, "key is %d bytes, the limit is %d", len(m.Key), MaxKeyBytes)
	}
	if !utf8.ValidString(m.Key) {
		return bad(ErrInvalidKey, "key is not valid UTF-8")
	}
	if max := limits.maxPayload(); len(m.Payload) > max {
		return bad(ErrPayloadTooLarge, "payload is %d bytes, the limit is %d (Limits.MaxPayloadBytes)", len(m.Payload), max)
	}
	for name, value := range m.Headers {
		if detail := checkHeader(name, value); detail != "" {
			return bad(ErrInvalidHeader, "%s", detail)
		}
	}
	return nil
}

func checkHeader(name, value string) string {
	if name == "" {
		return "header name is empty"
	}
	if len(name) > MaxHeaderNameBytes {
		return fmt.Sprintf("header name %.32q... is %d bytes, the limit is %d", name, len(name), MaxHeaderNameBytes)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Sprintf("header name %q has %q, which is not allowed in an HTTP token", name, name[i])
		}
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "outbox-") || strings.HasPrefix(lower, "nats-") {
		return fmt.Sprintf("header name %q uses a reserved prefix (outbox-, nats-)", name)
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Sprintf("header %q has a line break or NUL in its value", name)
	}
	if !utf8.ValidString(value) {
		return fmt.Sprintf("header %q has a value that is not valid UTF-8", name)
	}
	return ""
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
