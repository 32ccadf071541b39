package kafkapub

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Message states within a batch.
const (
	waiting  = iota // not produced yet
	inFlight        // produced, no answer yet
	settled         // its result is known
)

// batch is one Publish call: it produces each key's messages in order, the
// next once the previous is acknowledged, and keeps their results.
//
// Promises run on kgo's promise goroutine and record answers under mu;
// they wake the Publish goroutine only when it has work (a successor to
// produce) or the batch is complete, so that a batch of many keys costs
// one wake-up, not one per message.
type batch struct {
	p       *Publisher
	scratch *scratch
	msgs    []outbox.Message
	next    []int    // next[i]: the next message with the key of msgs[i], or -1
	topics  []string // the topic each message is produced to
	recs    []kgo.Record
	headers []int // headers[i]: where the headers of msgs[i] start in slab
	slab    []kgo.RecordHeader

	mu       sync.Mutex
	state    []int8
	results  []error
	ready    []int  // successors to produce, and records to produce again alone
	alone    []bool // alone[i]: msgs[i] goes alone, after its batch was too large; nil until then
	inFlight int
	done     bool          // Publish returned: promises must not touch results
	wake     chan struct{} // capacity 1: a pending wake-up
}

// scratch is the bookkeeping of a batch that the client never sees, pooled
// across Publish calls to spare the garbage collector.
type scratch struct {
	next    []int
	topics  []string
	state   []int8
	headers []int
	ready   []int
	last    map[string]int
}

var scratchPool = sync.Pool{New: func() any { return &scratch{last: make(map[string]int)} }}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// newBatch returns the batch of msgs, with room for extraHeaders headers per
// record beyond the message's own and the ID.
func newBatch(msgs []outbox.Message, extraHeaders int) *batch {
	sc := scratchPool.Get().(*scratch)
	n := len(msgs)
	sc.next, sc.topics, sc.state = grow(sc.next, n), grow(sc.topics, n), grow(sc.state, n)
	sc.headers, sc.ready = grow(sc.headers, n+1), sc.ready[:0]
	b := &batch{
		scratch: sc,
		msgs:    msgs,
		next:    sc.next,
		topics:  sc.topics,
		state:   sc.state,
		headers: sc.headers,
		results: make([]error, n),
		recs:    make([]kgo.Record, n),
		wake:    make(chan struct{}, 1),
	}
	for i, m := range msgs {
		b.headers[i+1] = b.headers[i] + len(m.Headers) + 1 + extraHeaders
	}
	b.slab = make([]kgo.RecordHeader, b.headers[n])
	// The first message of every key and every message without one can
	// go at once.
	last := sc.last
	for i, m := range msgs {
		b.next[i] = -1
		if m.Key != "" {
			if j, ok := last[m.Key]; ok {
				b.next[j] = i
				last[m.Key] = i
				continue
			}
			last[m.Key] = i
		}
		sc.ready = append(sc.ready, i)
	}
	clear(last)
	b.ready = sc.ready
	return b
}

// release returns the scratch to the pool, once no promise can run any
// more (every message was answered).
func (b *batch) release() {
	b.scratch.ready = b.ready[:0]
	for i := range b.topics {
		b.topics[i] = "" // do not keep the strings alive
	}
	scratchPool.Put(b.scratch)
	b.scratch = nil
}

// run produces the batch through p and returns the results once every
// message has one, or when ctx ends.
func (b *batch) run(ctx context.Context, p *Publisher) []error {
	b.p = p
	var todo []int
	for {
		b.mu.Lock()
		todo, b.ready = append(todo[:0], b.ready...), b.ready[:0]
		if len(todo) == 0 && b.inFlight == 0 {
			b.done = true
			b.mu.Unlock()
			b.release()
			return b.results
		}
		b.mu.Unlock()

		if len(todo) > 0 {
			b.produce(ctx, p, todo)
			continue // look again before waiting: all of them may have settled
		}

		select {
		case <-b.wake:
		case <-ctx.Done():
			b.mu.Lock()
			defer b.mu.Unlock()
			b.done = true
			for i, s := range b.state {
				if s == inFlight {
					b.failLocked(i, unanswered(b.topics[i], ctx.Err()))
				}
			}
			// Successors that became ready are held back like the rest.
			for _, i := range b.ready {
				if b.state[i] == waiting {
					b.failLocked(i, notSent{ctx.Err()})
				}
			}
			return b.results
		}
	}
}

// produce hands the messages todo to the client, or settles those that
// cannot go. They are counted in flight first, under one lock, so that the
// loop does not contend with the promises for every message.
func (b *batch) produce(ctx context.Context, p *Publisher, todo []int) {
	var alone []bool // alone[k]: todo[k] goes alone; nil in the common case
	b.mu.Lock()
	for k, i := range todo {
		b.state[i] = inFlight
		if b.alone != nil && b.alone[i] {
			if alone == nil {
				alone = make([]bool, len(todo))
			}
			alone[k] = true
		}
	}
	b.inFlight += len(todo)
	b.mu.Unlock()
	for k, i := range todo {
		rec := &b.recs[i]
		client := p.client
		var err error
		if alone != nil && alone[k] {
			client, err = p.aloneFor(ctx, rec) // filled already
		} else {
			err = p.fill(rec, b.slab[b.headers[i]:b.headers[i]:b.headers[i+1]], b.msgs[i])
			b.topics[i] = rec.Topic
		}
		if err == nil {
			if err = ctx.Err(); err != nil {
				err = notSent{err}
			}
		}
		if err != nil {
			b.mu.Lock()
			b.inFlight--
			b.failLocked(i, err)
			b.mu.Unlock()
			continue
		}
		client.Produce(ctx, rec, func(_ *kgo.Record, err error) { b.answer(i, err) })
	}
}

// answer records the client's answer for message i.
func (b *batch) answer(i int, err error) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.inFlight--
	switch {
	case err != nil && tooLarge(err) && (b.alone == nil || !b.alone[i]):
		// The broker refuses a record batch larger than the topic's
		// max.message.bytes as a whole: this record may only have been in
		// such a batch. Produce it again alone (successors still wait)
		// before judging it; see Publisher.aloneFor.
		if b.alone == nil {
			b.alone = make([]bool, len(b.msgs))
		}
		b.alone[i], b.state[i] = true, waiting
		b.ready = append(b.ready, i)
	case err != nil:
		if tooLarge(err) {
			b.p.limits.forget(b.topics[i]) // refused alone although the limit let it through
		}
		b.failLocked(i, classify(b.topics[i], recordBytes(&b.recs[i]), err))
	default:
		b.state[i] = settled
		if n := b.next[i]; n >= 0 {
			b.ready = append(b.ready, n)
		}
	}
	wake := len(b.ready) > 0 || b.inFlight == 0
	b.mu.Unlock()
	if wake {
		select {
		case b.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// failLocked settles message i with err and holds back the later messages
// of its key.
func (b *batch) failLocked(i int, err error) {
	b.results[i], b.state[i] = err, settled
	for j := b.next[i]; j >= 0; j = b.next[j] {
		b.results[j], b.state[j] = heldBack{b.msgs[i].ID}, settled
	}
}
