package kafkapub

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBatchBytes: the size Publish compares with a topic's max.message.bytes
// is the size of the record batch that holds the record alone, as kmsg
// encodes it (magic 2, uncompressed).
func TestBatchBytes(t *testing.T) {
	t.Parallel()
	for _, rec := range []*kgo.Record{
		{Topic: "t"},
		{Topic: "t", Key: []byte("k"), Value: []byte("v")},
		{Topic: "t", Key: []byte("order-42"), Value: bytes.Repeat([]byte("x"), 300),
			Headers: []kgo.RecordHeader{{Key: IDHeader, Value: []byte("01a23b5c-94bb-7011-9720-ef68effbae46")}, {Key: "traceparent", Value: nil}}},
		{Topic: "t", Value: bytes.Repeat([]byte("y"), 70_000)},
	} {
		r := kmsg.Record{Key: rec.Key, Value: rec.Value}
		for _, h := range rec.Headers {
			r.Headers = append(r.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // the length prefix of 0 took one byte
		records := r.AppendTo(nil)
		b := kmsg.RecordBatch{Magic: 2, NumRecords: 1, Records: records}
		want := len(b.AppendTo(nil))
		if got := batchBytes(rec); got != want {
			t.Errorf("batchBytes(key %d, value %d, %d headers) = %d; kmsg encodes %d", len(rec.Key), len(rec.Value), len(rec.Headers), got, want)
		}
	}
}
