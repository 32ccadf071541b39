// Package ledger checks an outbox run end to end: writers record what they
// committed and rolled back, a consumer records what reached the broker, and
// the report says what was lost, duplicated, reordered or leaked. It imports
// only core and the standard library (not package testing), so programs
// such as `outbox demo` can use it.
package ledger

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Ledger checks a run end to end: writers record what they committed (in
// commit order) and what they rolled back, a consumer records what reached
// the broker, and [Ledger.Report] compares the two. A message may arrive
// before its writer records the commit. Safe for concurrent use.
type Ledger struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a committed message arrives

	written  map[string]*ledgerEntry // every ID a writer reported
	perKey   map[string]int          // key -> next commit index
	received map[string]*arrival     // ID -> arrivals
	arrivals int                     // committed messages that arrived
	due      int                     // committed messages
	nextSeq  int                     // arrival counter

	started  time.Time
	complete time.Duration // when the last committed message first arrived
}

type ledgerEntry struct {
	key   string
	index int // commit position within the key
	state writeState
}

type arrival struct {
	first int // arrival sequence of the first copy
	count int
}

type writeState int

const (
	committed  writeState = iota + 1
	rolledBack            // must never arrive
	uncertain             // the commit's outcome is unknown (e.g. the connection died in Commit)
)

// New returns an empty ledger.
func New() *Ledger {
	return &Ledger{
		changed:  make(chan struct{}),
		written:  make(map[string]*ledgerEntry),
		perKey:   make(map[string]int),
		received: make(map[string]*arrival),
		started:  time.Now(),
	}
}

// Committed records messages whose transaction committed. Messages of one
// key must be recorded in commit order (which is the order they were
// written in, when each key has one writer at a time).
func (l *Ledger) Committed(msgs ...outbox.Message) { l.record(committed, msgs) }

// RolledBack records messages whose transaction rolled back, panicked or
// was cancelled: they must never reach the broker.
func (l *Ledger) RolledBack(msgs ...outbox.Message) { l.record(rolledBack, msgs) }

// Uncertain records messages whose commit returned an error that leaves the
// outcome unknown: they may or may not arrive, and are not counted as lost.
func (l *Ledger) Uncertain(msgs ...outbox.Message) { l.record(uncertain, msgs) }

func (l *Ledger) record(state writeState, msgs []outbox.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		e := &ledgerEntry{key: m.Key, state: state, index: l.perKey[m.Key]}
		l.perKey[m.Key]++
		l.written[m.ID] = e
		if state == committed {
			l.due++
			if l.received[m.ID] != nil {
				l.arrivedLocked()
			}
		}
	}
}

// Receive records a message read from the broker.
func (l *Ledger) Receive(r Received) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.received[r.ID]
	if a != nil {
		a.count++
		return
	}
	l.nextSeq++
	l.received[r.ID] = &arrival{first: l.nextSeq, count: 1}
	if e := l.written[r.ID]; e != nil && e.state == committed {
		l.arrivedLocked()
	}
}

func (l *Ledger) arrivedLocked() {
	l.arrivals++
	if l.arrivals == l.due {
		l.complete = time.Since(l.started)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// WaitArrived blocks until the message with id has arrived or ctx ends.
func (l *Ledger) WaitArrived(ctx context.Context, id string) error {
	for {
		l.mu.Lock()
		_, ok := l.received[id]
		changed := l.changed
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// WaitAll blocks until every committed message has arrived or ctx ends.
func (l *Ledger) WaitAll(ctx context.Context) error {
	for {
		l.mu.Lock()
		have, want, changed := l.arrivals, l.due, l.changed
		l.mu.Unlock()
		if have >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d committed messages arrived: %w", have, want, ctx.Err())
		case <-changed:
		}
	}
}

// Report compares what was written with what arrived.
func (l *Ledger) Report() Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Report{}
	if l.arrivals == l.due {
		r.Recovery = l.complete
	}
	type seen struct {
		id           string
		first, index int
	}
	byKey := make(map[string][]seen)
	for id, e := range l.written {
		a := l.received[id]
		n := 0
		if a != nil {
			n = a.count
		}
		switch e.state {
		case committed:
			r.Committed++
			if n == 0 {
				r.Lost++
				r.LostIDs = appendSome(r.LostIDs, id)
			}
		case rolledBack:
			r.RolledBack++
			if n > 0 {
				r.Leaked++
				r.LeakedIDs = appendSome(r.LeakedIDs, id)
			}
		case uncertain:
			r.Uncertain++
		}
		if n > 0 && e.state != rolledBack {
			r.Delivered++
			if e.key != "" {
				byKey[e.key] = append(byKey[e.key], seen{id, a.first, e.index})
			}
		}
		if n > 1 {
			r.Duplicates += n - 1
		}
	}
	// Per-key order is judged on first arrivals: a message that first
	// arrives after a later-committed message of its key is inverted.
	for _, list := range byKey {
		slices.SortFunc(list, func(a, b seen) int { return a.first - b.first })
		high := -1
		for _, s := range list {
			if s.index < high {
				r.OrderViolations++
				r.InvertedIDs = appendSome(r.InvertedIDs, s.id)
			}
			high = max(high, s.index)
		}
	}
	for id := range l.received {
		if l.written[id] == nil {
			r.Unknown++
			r.UnknownIDs = appendSome(r.UnknownIDs, id)
		}
	}
	slices.Sort(r.LostIDs)
	slices.Sort(r.LeakedIDs)
	slices.Sort(r.UnknownIDs)
	return r
}

func appendSome(ids []string, id string) []string {
	if len(ids) < 10 {
		ids = append(ids, id)
	}
	return ids
}

// Received is a message as a consumer sees it on the broker.
type Received struct {
	// ID is the message ID, read from where the adapter puts it (a Kafka
	// header, the NATS Nats-Msg-Id header).
	ID      string
	Topic   string
	Key     string
	Payload []byte
	// Headers are the message's headers; adapters may add their own.
	Headers map[string]string
}

// Report is the verdict of a [Ledger].
type Report struct {
	// Committed messages, and how many of them (plus uncertain ones) arrived.
	Committed, Delivered int
	// Lost committed messages that never arrived.
	Lost int
	// Duplicates counts arrivals beyond the first of each ID.
	Duplicates int
	// OrderViolations counts messages that first arrived after a message of
	// their key that was committed later.
	OrderViolations int
	// RolledBack messages, and Leaked ones among them that arrived anyway.
	RolledBack, Leaked int
	// Uncertain commits (outcome unknown), neither lost nor leaked.
	Uncertain int
	// Unknown counts arrivals with an ID no writer reported.
	Unknown int
	// Recovery is how long after the ledger started the last committed
	// message arrived (zero when some never did).
	Recovery time.Duration

	// Up to ten example IDs of each problem.
	LostIDs, LeakedIDs, InvertedIDs, UnknownIDs []string
}

// Clean reports whether nothing was lost, leaked, reordered or unexplained.
// Duplicates are allowed: delivery is at least once.
func (r Report) Clean() bool {
	return r.Lost == 0 && r.Leaked == 0 && r.OrderViolations == 0 && r.Unknown == 0
}

// String is a one-line summary.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "committed=%d delivered=%d lost=%d duplicates=%d order_violations=%d rolled_back=%d leaked=%d uncertain=%d unknown=%d",
		r.Committed, r.Delivered, r.Lost, r.Duplicates, r.OrderViolations, r.RolledBack, r.Leaked, r.Uncertain, r.Unknown)
	if r.Recovery > 0 {
		fmt.Fprintf(&b, " complete_after=%s", r.Recovery.Round(time.Millisecond))
	}
	for _, p := range []struct {
		name string
		ids  []string
	}{{"lost", r.LostIDs}, {"leaked", r.LeakedIDs}, {"inverted", r.InvertedIDs}, {"unknown", r.UnknownIDs}} {
		if len(p.ids) > 0 {
			fmt.Fprintf(&b, " %s_examples=%v", p.name, p.ids)
		}
	}
	return b.String()
}
