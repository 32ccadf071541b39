package kafkapub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicLimits caches the max.message.bytes of the topics whose record
// batches a broker refused as too large: it tells a record too large on its
// own (dead-lettered) from one that was only in a batch too large (produced
// again alone). Each topic is read once with DescribeConfigs; a failed read
// (no DESCRIBE_CONFIGS permission on the topic, for one) is tried again
// after limitRetry, and meanwhile the limit is unknown and the broker
// judges every such record alone.
type topicLimits struct {
	mu    sync.Mutex
	known map[string]topicLimit
}

type topicLimit struct {
	bytes int       // zero while unknown
	read  time.Time // of a failed read, to try again after limitRetry
}

// limitRetry is how long a failed read of a topic's limit is remembered.
const limitRetry = time.Minute

// limitReadTimeout bounds one DescribeConfigs request.
const limitReadTimeout = 5 * time.Second

// get returns topic's max.message.bytes, reading it through client the first
// time, or zero when it cannot be read.
func (l *topicLimits) get(ctx context.Context, client *kgo.Client, topic string) int {
	l.mu.Lock()
	lim, ok := l.known[topic]
	l.mu.Unlock()
	if ok && (lim.bytes > 0 || time.Since(lim.read) < limitRetry) {
		return lim.bytes
	}
	rctx, cancel := context.WithTimeout(ctx, limitReadTimeout)
	defer cancel()
	n, err := readMaxMessageBytes(rctx, client, topic)
	if err != nil && ctx.Err() != nil {
		return 0 // the caller's deadline, not the topic's: try again next time
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known == nil {
		l.known = make(map[string]topicLimit)
	}
	l.known[topic] = topicLimit{bytes: n, read: time.Now()}
	return n
}

// forget drops topic's limit, once a record the limit let through was
// refused alone: the topic's max.message.bytes may have been lowered. A
// failed read stays remembered until limitRetry.
func (l *topicLimits) forget(topic string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known[topic].bytes > 0 {
		delete(l.known, topic)
	}
}

// readMaxMessageBytes reads the max.message.bytes in force for topic (its
// own or the broker's default).
func readMaxMessageBytes(ctx context.Context, client *kgo.Client, topic string) (int, error) {
	// A kadm.Client over the publisher's client; never closed, since that
	// would close the publisher's client.
	rcs, err := kadm.NewClient(client).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, err
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, err
	}
	for _, c := range rc.Configs {
		if c.Key != "max.message.bytes" || c.Value == nil {
			continue
		}
		n, err := strconv.Atoi(*c.Value)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("topic %q has max.message.bytes %q", topic, *c.Value)
		}
		return n, nil
	}
	return 0, errors.New("the broker did not report max.message.bytes")
}

// batchBytes is the size of a record batch (magic 2, uncompressed) that
// holds rec alone, as the broker compares it with max.message.bytes: the
// batch header, then the record's varint-framed fields.
func batchBytes(rec *kgo.Record) int {
	const header = 61 // base offset 8, length 4, leader epoch 4, magic 1, crc 4, attributes 2, last offset delta 4, timestamps 16, producer id 8 and epoch 2, base sequence 4, record count 4
	body := 1 + 1 + 1 // attributes, timestamp delta, offset delta (all zero in a batch of one)
	body += bytesField(rec.Key) + bytesField(rec.Value) + varintLen(int64(len(rec.Headers)))
	for _, h := range rec.Headers {
		body += varintLen(int64(len(h.Key))) + len(h.Key) + bytesField(h.Value)
	}
	return header + varintLen(int64(body)) + body
}

// bytesField is the size of a nullable byte field of a record: a zigzag
// varint length (-1 for null) and the bytes.
func bytesField(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

// varintLen is the size of v as a zigzag varint.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}
