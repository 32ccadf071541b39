package natspub

import (
	"fmt"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// SubjectPrefix returns a [Config.Subject] mapping that publishes each
// message on prefix.<Topic>, e.g. "prod.orders.created" for the topic
// "orders.created" and the prefix "prod". A trailing dot on prefix is
// ignored; an empty prefix leaves topics unchanged.
func SubjectPrefix(prefix string) func(outbox.Message) string {
	prefix = strings.TrimSuffix(prefix, ".")
	if prefix == "" {
		return func(m outbox.Message) string { return m.Topic }
	}
	return func(m outbox.Message) string { return prefix + "." + m.Topic }
}

// The placeholders of a subject template (see [SubjectTemplate]).
const (
	placeholderTopic = "{topic}"
	placeholderKey   = "{key}"
)

// SubjectTemplate returns a [Config.Subject] mapping that builds each
// subject from template, in which {topic} stands for the message's Topic
// and {key} for its Key: "{topic}.{key}" publishes a message of topic
// "orders" and key "42" on "orders.42", so that consumers can subscribe to
// one key ("orders.42") or to all ("orders.>"), and a stream can keep the
// last message of each key (MaxMsgsPerSubject).
//
// {key} must be a whole token, between dots or at an end of the template:
// a message with an empty key is published without that token and its
// dot ("{topic}.{key}" gives "orders"), so a stream must capture that
// subject too ([DefaultStreamFor] captures both "orders" and "orders.>").
// The key is put in as it is: a key with dots spans several tokens, and a
// key with white space, or one that is "*" or ">", makes a subject that
// cannot be published on, so the message fails permanently.
//
// SubjectTemplate returns an error matching [outbox.ErrInvalidConfig] for
// a placeholder other than these two, a brace that opens no placeholder, a
// {key} inside a token, or a template that gives no valid subject, and
// also when the template leaves nothing once an empty key is taken out
// ("{key}" alone).
func SubjectTemplate(template string) (func(outbox.Message) string, error) {
	t, err := parseSubjectTemplate(template)
	if err != nil {
		return nil, fmt.Errorf("%w: natspub: subject template %q: %s", outbox.ErrInvalidConfig, template, err)
	}
	return t.subject, nil
}

// subjectTemplate is a parsed template: its dot-separated tokens, each
// either the key placeholder alone or text with {topic} in it.
type subjectTemplate struct {
	tokens []subjectToken
}

type subjectToken struct {
	key   bool     // the token is {key}
	parts []string // otherwise: literal text, with the topic placeholder as parts of their own
}

func parseSubjectTemplate(template string) (subjectTemplate, error) {
	var t subjectTemplate
	if template == "" {
		return t, fmt.Errorf("the template is empty; use placeholders %s and %s, e.g. %s.%s", placeholderTopic, placeholderKey, placeholderTopic, placeholderKey)
	}
	for raw := range strings.SplitSeq(template, ".") {
		tok := subjectToken{}
		rest := raw
		for rest != "" {
			open := strings.IndexAny(rest, "{}")
			if open < 0 {
				tok.parts = append(tok.parts, rest)
				break
			}
			if open > 0 {
				tok.parts = append(tok.parts, rest[:open])
				rest = rest[open:]
			}
			end := strings.IndexByte(rest, '}')
			if rest[0] == '}' || end < 0 {
				return t, fmt.Errorf("a brace that opens or closes no placeholder; the placeholders are %s and %s", placeholderTopic, placeholderKey)
			}
			switch name := rest[:end+1]; name {
			case placeholderTopic:
				tok.parts = append(tok.parts, placeholderTopic)
			case placeholderKey:
				if raw != placeholderKey {
					return t, fmt.Errorf("%s must be a whole token (between dots), as a message without a key is published without it; %q has more", placeholderKey, raw)
				}
				tok.key = true
			default:
				return t, fmt.Errorf("unknown placeholder %s; the placeholders are %s and %s", name, placeholderTopic, placeholderKey)
			}
			rest = rest[end+1:]
		}
		t.tokens = append(t.tokens, tok)
	}
	for _, key := range []string{"k", ""} {
		subject := t.subject(outbox.Message{Topic: "t", Key: key})
		if why := checkSubject(subject); why != "" {
			if key == "" {
				return t, fmt.Errorf("a message without a key would have no subject: %s; add %s or a literal token", why, placeholderTopic)
			}
			return t, fmt.Errorf("%s", why)
		}
	}
	return t, nil
}

// subject renders the template for m.
func (t subjectTemplate) subject(m outbox.Message) string {
	var b strings.Builder
	for _, tok := range t.tokens {
		if tok.key && m.Key == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if tok.key {
			b.WriteString(m.Key)
			continue
		}
		for _, p := range tok.parts {
			if p == placeholderTopic {
				p = m.Topic
			}
			b.WriteString(p)
		}
	}
	return b.String()
}

// checkSubject reports why subject cannot be published on, or "" when it
// can: NATS publish subjects are non-empty dot-separated tokens without
// white space, and "*" and ">" tokens are wildcards that only subscribers
// may use.
func checkSubject(subject string) string {
	if subject == "" {
		return "the subject is empty"
	}
	start := 0
	for i := 0; i <= len(subject); i++ {
		if i < len(subject) {
			c := subject[i]
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0 || c == 0x7f {
				return fmt.Sprintf("subject %q has white space or a control character", subject)
			}
			if c != '.' {
				continue
			}
		}
		switch token := subject[start:i]; token {
		case "":
			return fmt.Sprintf("subject %q has an empty token", subject)
		case "*", ">":
			return fmt.Sprintf("subject %q has the wildcard token %q; publish subjects must be literal", subject, token)
		}
		start = i + 1
	}
	return ""
}
