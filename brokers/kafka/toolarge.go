package kafkapub

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
)

// A broker checks max.message.bytes against a whole record batch, and kgo
// puts in one batch the records of a partition that wait for a request
// (up to the client's MaxMessageBytes). When that is above a topic's limit,
// MESSAGE_TOO_LARGE fails every record of a batch that only together is
// too large. Publish therefore judges such a record alone: one that alone
// exceeds the topic's max.message.bytes fails permanently, as it would
// have with MaxMessageBytes at or below the limit; any other is produced
// again, alone, within the same call, and its successors of the same key
// wait for it as they wait for any record.

// tooLarge reports whether err refuses a record, or its batch, as too large.
func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// aloneFor returns the client that produces rec, refused in a batch too
// large for its topic, in a request of its own: rec goes alone unless it
// alone exceeds the topic's max.message.bytes, which is a permanent error.
// When the limit cannot be read, the broker judges the record alone.
func (p *Publisher) aloneFor(ctx context.Context, rec *kgo.Record) (*kgo.Client, error) {
	if limit, size := p.limits.get(ctx, p.client, rec.Topic), batchBytes(rec); limit > 0 && size > limit {
		return nil, outbox.Permanent(fmt.Errorf(
			"kafkapub: record too large for topic %q on its own: a batch of it alone is %d bytes before compression, and the topic's max.message.bytes is %d; raise that or send smaller messages: %w",
			rec.Topic, size, limit, kerr.MessageTooLarge))
	}
	return p.aloneClient()
}

// aloneClient returns a client with the options of the publisher's that
// buffers one record at a time, so that every request carries one record:
// made on first need, closed by Close. Consumer options of the publisher's
// client are left out: a second member in its group would only rebalance it.
func (p *Publisher) aloneClient() (*kgo.Client, error) {
	p.aloneMu.Lock()
	defer p.aloneMu.Unlock()
	if p.closed.Load() {
		return nil, fmt.Errorf("%w: %w", outbox.ErrUnavailable, ErrClosed)
	}
	if p.alone == nil {
		opts := slices.DeleteFunc(slices.Clone(p.client.Opts()), func(o kgo.Opt) bool {
			_, consumer := o.(kgo.ConsumerOpt)
			_, group := o.(kgo.GroupOpt)
			return consumer || group
		})
		opts = append(opts, kgo.MaxBufferedRecords(1), kgo.ProducerLinger(0))
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, fmt.Errorf("kafkapub: a client to produce records one at a time: %w", err)
		}
		p.alone = cl
	}
	return p.alone, nil
}
