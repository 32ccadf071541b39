package kafkapub

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
)

// IDHeader is the record header that carries [outbox.Message.ID], so that
// consumers can drop the duplicates at-least-once delivery allows. Core
// reserves the "outbox-" prefix for adapters: no message header can clash
// with it.
const IDHeader = "outbox-id"

// fill makes rec the Kafka record of m, with headers (capacity
// len(m.Headers)+1, plus ceHeaders with CloudEvents, length 0) as its header
// slice; batches hand out records and headers from one allocation each. The
// topic is set even when the error is not nil.
func (p *Publisher) fill(rec *kgo.Record, headers []kgo.RecordHeader, m outbox.Message) error {
	rec.Topic = p.topic(m)
	if rec.Topic == "" {
		return outbox.Permanent(fmt.Errorf("kafkapub: Config.Topic mapped message %s (topic %q) to an empty topic", m.ID, m.Topic))
	}
	if len(m.Payload) > 0 {
		rec.Value = m.Payload
	}
	// The key, the ID and the header values share one allocation, and
	// the headers map is walked once.
	rec.Headers = append(headers, kgo.RecordHeader{Key: IDHeader})
	var valuesArr [8]string
	values := valuesArr[:0]
	n := len(m.Key) + len(m.ID)
	for name, value := range m.Headers {
		if p.ce != nil {
			if name = p.ce.rename(name); name == "" {
				continue
			}
		}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: name})
		values = append(values, value)
		n += len(value)
	}
	var eventType string
	if p.ce != nil {
		eventType = p.ce.eventType(m)
		n += len(eventType) + len(time.RFC3339Nano)
	}
	buf := make([]byte, 0, n)
	take := func(s string) []byte {
		start := len(buf)
		buf = append(buf, s...)
		return buf[start:len(buf):len(buf)]
	}
	if m.Key != "" {
		rec.Key = take(m.Key)
	}
	rec.Headers[0].Value = take(m.ID)
	for i, value := range values {
		rec.Headers[i+1].Value = take(value)
	}
	if p.ce != nil {
		rec.Headers = append(rec.Headers,
			kgo.RecordHeader{Key: ceSpecVersion, Value: specVersion1},
			kgo.RecordHeader{Key: ceID, Value: rec.Headers[0].Value},
			kgo.RecordHeader{Key: ceSource, Value: p.ce.source},
			kgo.RecordHeader{Key: ceType, Value: take(eventType)})
		if !m.CreatedAt.IsZero() {
			start := len(buf)
			buf = m.CreatedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: ceTime, Value: buf[start:len(buf):len(buf)]})
		}
	}
	if len(rec.Headers) > 2 {
		slices.SortFunc(rec.Headers[1:], func(a, b kgo.RecordHeader) int { return strings.Compare(a.Key, b.Key) })
	}
	return nil
}

// recordBytes is the number of bytes of key, value and headers of rec.
func recordBytes(rec *kgo.Record) int {
	n := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// RecordID returns the message ID a record carries in its [IDHeader]
// header, or "" when it has none.
func RecordID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == IDHeader {
			return string(h.Value)
		}
	}
	return ""
}
