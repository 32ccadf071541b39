package natspub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	outbox "github.com/txoutbox/txoutbox/core"
)

// batch is one Publish call. It runs on the caller's goroutine, with no
// goroutine per message: it sends while the window has room and a message
// is ready, and otherwise waits for acknowledgements of its own (see wait).
// It settles messages in the order it sent them, the order in which
// JetStream answers them on one connection and one stream.
//
// Per-key order: a message whose key has an earlier message in the batch is
// "chained" behind it and sent only when that message is acknowledged. So
// at most one message per key is in flight, and a failure leaves every
// later message of its key unsent. Pipelining within a key would be faster
// for batches of few keys, but JetStream may then store message 3 of a key
// after refusing message 2 (no stream for its subject, a stream limit, a
// lost connection), which per-key order forbids.
type batch struct {
	ctx     context.Context
	p       *Publisher
	msgs    []outbox.Message
	results []error // errPending until known

	last    map[string]int // last message of each key, while chaining
	next    []int          // next message of the same key, or -1; empty when no key repeats
	chained []bool         // an earlier message of the same key is in the batch

	ready   []int // chained messages whose predecessor was acknowledged
	readyAt int
	scan    int // messages before scan were sent, queued or settled

	flights []flight // sent messages; those from head on are unsettled
	head    int
	gate    int // no flight between head and gate has a chained successor

	stop  error // why nothing more is sent; nil while sending
	stall jetstream.PublishOpt
	timer *time.Timer

	streams map[string]error // no-stream verdicts of this batch, by subject
}

// flight is one sent message.
type flight struct {
	index    int
	msg      *nats.Msg
	paf      jetstream.PubAckFuture
	ok       <-chan *jetstream.PubAck // set by listen
	fail     <-chan error
	done     bool // ack or err is the outcome
	ack      *jetstream.PubAck
	err      error
	deadline time.Time
	resent   bool // sent again after a missing stream was found or created
}

// batches recycles the bookkeeping of Publish calls: a relay publishes
// batch after batch of the same size.
var batches = sync.Pool{New: func() any { return &batch{last: make(map[string]int)} }}

// newBatch returns a batch for one Publish call; release it after run.
func newBatch(ctx context.Context, p *Publisher, msgs []outbox.Message, results []error) *batch {
	b := batches.Get().(*batch)
	b.ctx, b.p, b.msgs, b.results = ctx, p, msgs, results
	b.stall = jetstream.WithStallWait(p.cfg.AckTimeout)
	for i := range results {
		results[i] = errPending
	}
	b.chain()
	return b
}

// release clears b, dropping its references to messages and futures, and
// returns it to the pool.
func (b *batch) release() {
	clear(b.flights)
	clear(b.last)
	clear(b.streams)
	*b = batch{
		flights: b.flights[:0],
		last:    b.last,
		next:    b.next[:0],
		chained: b.chained[:0],
		ready:   b.ready[:0],
		timer:   b.timer,
	}
	batches.Put(b)
}

// chain links the messages of each repeated key.
func (b *batch) chain() {
	linked := false
	for i := range b.msgs {
		key := b.msgs[i].Key
		if key == "" {
			continue
		}
		if prev, ok := b.last[key]; ok {
			if !linked {
				linked = true
				b.next = slices.Grow(b.next[:0], len(b.msgs))[:len(b.msgs)]
				for j := range b.next {
					b.next[j] = -1
				}
				b.chained = slices.Grow(b.chained[:0], len(b.msgs))[:len(b.msgs)]
				clear(b.chained)
			}
			b.next[prev] = i
			b.chained[i] = true
		}
		b.last[key] = i
	}
	if !linked {
		b.next, b.chained = b.next[:0], b.chained[:0]
	}
}

func (b *batch) nextOf(i int) int {
	if len(b.next) == 0 {
		return -1
	}
	return b.next[i]
}

func (b *batch) run() {
	defer func() {
		if b.timer != nil {
			b.timer.Stop()
		}
	}()
	for {
		if b.stop == nil {
			b.stop = b.halted()
		}
		i := -1
		if b.stop == nil {
			i = b.peek()
		}
		if i < 0 {
			if b.head == len(b.flights) || b.ctx.Err() != nil {
				break
			}
			b.wait(false)
			continue
		}
		if !b.acquire() {
			continue // something settled, or ctx ended: look again
		}
		b.take()
		b.send(i)
	}
	b.finish()
}

// halted reports why sending must stop now, or nil.
func (b *batch) halted() error {
	if err := b.ctx.Err(); err != nil {
		return notSent{err}
	}
	if err := b.p.unavailable(); err != nil {
		return fmt.Errorf("natspub: not sent: %w", err)
	}
	return nil
}

// peek returns the next message to send, or -1 when none can be sent now.
func (b *batch) peek() int {
	if b.readyAt < len(b.ready) {
		return b.ready[b.readyAt]
	}
	for ; b.scan < len(b.msgs); b.scan++ {
		i := b.scan
		if b.results[i] == errPending && (len(b.chained) == 0 || !b.chained[i]) {
			return i
		}
	}
	return -1
}

// take consumes what peek returned.
func (b *batch) take() {
	if b.readyAt < len(b.ready) {
		b.readyAt++
	} else {
		b.scan++
	}
}

// acquire takes a slot of the window. It reports false when it settled
// messages of its own or ctx ended instead.
func (b *batch) acquire() bool {
	select {
	case b.p.window <- struct{}{}:
		return true
	default:
		return b.wait(true)
	}
}

// wait blocks until messages of the batch settle or time out, ctx ends, or
// (with wantSlot) a slot of the window frees. It reports whether it took a
// slot.
//
// With wantSlot it wakes for the oldest message, whose settlement frees a
// slot. Without, nothing can be sent until a chained message's predecessor
// settles, so it wakes for the oldest such predecessor, or for the newest
// message when no message waits: acknowledgements arrive in the order the
// messages were sent, so one wake-up usually settles the whole batch.
func (b *batch) wait(wantSlot bool) bool {
	if b.sweep() {
		return false
	}
	var slot chan struct{}
	if wantSlot {
		slot = b.p.window
	}
	if b.head == len(b.flights) {
		// Nothing of ours in flight: the slot will come from another call.
		select {
		case slot <- struct{}{}:
			return true
		case <-b.ctx.Done():
			return false
		}
	}
	f := &b.flights[b.target(wantSlot)]
	f.listen()
	deadline := time.Until(b.flights[b.head].deadline)
	if b.timer == nil {
		b.timer = time.NewTimer(deadline)
	} else {
		b.timer.Reset(deadline)
	}
	select {
	case slot <- struct{}{}:
		return true
	case f.ack = <-f.ok:
		f.done = true
	case f.err = <-f.fail:
		f.done = true
	case <-b.timer.C:
		if h := &b.flights[b.head]; !h.poll() {
			h.done, h.err = true, errAckTimeout
		}
	case <-b.ctx.Done():
		return false
	}
	b.sweep()
	return false
}

// target returns the position in flights of the message wait wakes for.
func (b *batch) target(wantSlot bool) int {
	if wantSlot || len(b.next) == 0 {
		if wantSlot {
			return b.head
		}
		return len(b.flights) - 1
	}
	b.gate = max(b.gate, b.head)
	for b.gate < len(b.flights) && b.next[b.flights[b.gate].index] < 0 {
		b.gate++
	}
	if b.gate < len(b.flights) {
		return b.gate
	}
	return len(b.flights) - 1
}

// sweep settles the oldest messages while their outcomes are known. It
// reports whether it settled any.
func (b *batch) sweep() bool {
	from := b.head
	for b.head < len(b.flights) && b.flights[b.head].poll() {
		b.settle()
	}
	return b.head > from
}

// listen makes f's outcome channels, once.
func (f *flight) listen() {
	if f.ok == nil {
		f.ok = f.paf.Ok()
	}
	if f.fail == nil {
		f.fail = f.paf.Err()
	}
}

// poll reports whether f has an outcome, taking it if it just arrived. It
// asks for the acknowledgement first, the usual outcome, so that a message
// acknowledged before anyone waited costs one call into the future.
func (f *flight) poll() bool {
	if f.done {
		return true
	}
	if f.ok == nil {
		f.ok = f.paf.Ok()
	}
	select {
	case f.ack = <-f.ok:
		f.done = true
		return true
	default:
	}
	if f.fail == nil {
		f.fail = f.paf.Err()
	}
	select {
	case f.ack = <-f.ok:
		f.done = true
	case f.err = <-f.fail:
		f.done = true
	default:
	}
	return f.done
}

// send publishes message i, holding a slot of the window.
func (b *batch) send(i int) {
	msg, err := b.p.message(&b.msgs[i])
	if err != nil {
		<-b.p.window
		b.fail(i, err)
		return
	}
	b.publish(flight{index: i, msg: msg})
}

// publish hands f's message to the connection and queues f, or settles it
// at once when the client refuses it.
func (b *batch) publish(f flight) {
	paf, err := b.p.js.PublishMsgAsync(f.msg, b.stall)
	if err != nil {
		<-b.p.window
		b.fail(f.index, b.p.classify(f.msg.Subject, err))
		return
	}
	f.paf, f.ok, f.fail = paf, nil, nil
	f.done, f.ack, f.err = false, nil, nil
	f.deadline = time.Now().Add(b.p.cfg.AckTimeout)
	b.flights = append(b.flights, f)
}

// settle records the outcome of the oldest unsettled message, which has
// one: its acknowledgement, or the error that took its place.
func (b *batch) settle() {
	f := b.flights[b.head]
	b.head++
	i, err := f.index, f.err
	if err == nil {
		if f.ack != nil && f.ack.Duplicate {
			b.p.duplicates.Add(1)
		}
		<-b.p.window
		b.results[i] = nil
		if n := b.nextOf(i); n >= 0 {
			b.ready = append(b.ready, n)
		}
		return
	}
	if isNoResponse(err) {
		retry, verdict := b.noStream(f)
		if retry {
			f.resent = true
			b.publish(f) // keeps its slot
			return
		}
		err = verdict
	} else {
		err = b.p.classify(f.msg.Subject, err)
	}
	<-b.p.window
	b.fail(i, err)
}

// fail records err for message i, holds back the later messages of its
// key, and stops sending when the server is unreachable.
func (b *batch) fail(i int, err error) {
	b.results[i] = err
	for j := b.nextOf(i); j >= 0; j = b.nextOf(j) {
		if b.results[j] == errPending {
			b.results[j] = outbox.ErrNotAttempted
		}
	}
	if b.stop == nil && errors.Is(err, outbox.ErrUnavailable) {
		b.stop = fmt.Errorf("natspub: not sent after an earlier failure: %w", err)
	}
}

// noStream decides what to do with a message nothing answered: it reports
// retry when the message should be sent again (its stream exists now, or
// was just created), else the error to report.
func (b *batch) noStream(f flight) (retry bool, err error) {
	subject := f.msg.Subject
	if down := b.p.unavailable(); down != nil {
		return false, fmt.Errorf("natspub: no answer for the message on %q: %w", subject, down)
	}
	if b.stop != nil || f.resent {
		return false, b.noStreamVerdict(subject)
	}
	verdict, seen := b.streams[subject]
	if !seen {
		verdict = b.p.findStream(b.ctx, subject)
		if b.streams == nil {
			b.streams = make(map[string]error)
		}
		b.streams[subject] = verdict
	}
	return verdict == nil, verdict
}

// noStreamVerdict is the error of a message that stays unanswered. The
// connection is up and a stream captures the subject, so the stream is
// what cannot take it now (it has no leader, e.g. a replicated stream
// without a quorum of its servers): the relay holds back that subject and
// goes on with the others.
func (b *batch) noStreamVerdict(subject string) error {
	if verdict, seen := b.streams[subject]; seen && verdict != nil {
		return verdict
	}
	return fmt.Errorf("natspub: the stream for %q did not answer (no leader, or JetStream is recovering): %w", subject, outbox.ErrTopicUnavailable)
}

// finish settles what is left when sending stopped: acknowledgements that
// already arrived count, other messages in flight failed, and unsent
// messages get the reason sending stopped (the first of each key) or
// ErrNotAttempted (the later ones).
func (b *batch) finish() {
	if b.stop == nil {
		b.stop = b.halted()
	}
	b.sweep()
	for b.head < len(b.flights) {
		f := &b.flights[b.head]
		cause := b.ctx.Err()
		if cause == nil {
			cause = errAckTimeout
		}
		f.done, f.err = true, cause
		b.settle()
		b.sweep()
	}
	for i, err := range b.results {
		if err != errPending {
			continue
		}
		stop := b.stop
		if stop == nil { // unreachable: run sends everything unless stopped
			stop = notSent{errors.New("publishing stopped")}
		}
		b.fail(i, stop)
	}
}
