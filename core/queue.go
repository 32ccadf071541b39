package outbox

import (
	"time"
)

// queue is the relay's memory of one run: the lanes it holds, and the
// records it has read from them but not yet settled, per key, in the order
// it read them. All its fields are guarded by run.mu.
//
// Per-key order comes from three rules: a key has at most one batch in
// flight (busy); a batch takes a key's records from the front of its queue
// in order; and a failed record goes back to the front with the records of
// its key that followed it. A record read after others of its key (a late
// commit, or a replayed dead letter) goes to the back: it committed after
// those were read, so the broker sees the key in commit order.
type queue struct {
	lanes  map[int]*laneHold
	keys   map[string]*keyQueue
	order  []*keyQueue      // keys with records, in the order they appeared
	known  map[string]int64 // IDs read and not yet settled (queued or in flight), with their Seqs
	queued int              // records in keys' queues (not in flight)
	// clog is how many records queued behind a key's batch in flight make
	// the key clogged (see ready); zero means never. The relay sets it to
	// BatchSize.
	clog int

	// reading is set while a read is under way, and settledDuring holds
	// the IDs delivered or dead-lettered meanwhile: the read may have
	// seen them still pending, and must not queue them again.
	reading       bool
	settledDuring map[string]struct{}
	// deadDuring holds the keys whose records were forgotten meanwhile
	// (dead-lettered in strict order, or a batch settled for a lane held
	// at another epoch since): the read left out the forgotten records,
	// which the relay held, and may have returned their key's later ones,
	// which must not be queued without them.
	deadDuring map[string]struct{}
}

// laneHold is a lane this relay holds.
type laneHold struct {
	epoch int64
	// until is this relay's own deadline for the lease: the start of the
	// SyncLanes or TakeLanes call that extended it, plus Lease. Past it,
	// the relay neither reads nor publishes the lane, since another relay
	// may hold it.
	until time.Time
	// draining is set when the relay gives the lane back: nothing more is
	// read or published from it, and it is released once its batches in
	// flight are settled.
	draining bool
	inflight int // records of the lane in flight
}

func (h *laneHold) usable(now time.Time) bool { return !h.draining && now.Before(h.until) }

// keyQueue holds the records of one key read and not settled. Records with
// an empty key each get a queue of their own: they are ordered by nothing.
type keyQueue struct {
	key  string // the map key: the record's key, or keylessPrefix+ID without one
	lane int
	recs []Record
	busy bool // a batch with records of this key is in flight
	// notBefore holds the key back: the backoff of a failed record, or the
	// pause of its topic.
	notBefore time.Time
	listed    bool // present in queue.order
}

func newQueue() *queue {
	return &queue{
		lanes:         make(map[int]*laneHold),
		keys:          make(map[string]*keyQueue),
		known:         make(map[string]int64),
		settledDuring: make(map[string]struct{}),
		deadDuring:    make(map[string]struct{}),
	}
}

// keylessPrefix names the queue of a record without a key. Keys are any
// valid UTF-8, NUL included, and never contain the byte 0xff: no key can
// name a keyless record's queue (a key "\x00"+ID did, when that was the
// prefix, and the two records shared a queue of one lane's count).
const keylessPrefix = "\xff"

func queueKey(r *Record) string {
	if r.Key == "" {
		return keylessPrefix + r.ID
	}
	return r.Key
}

// keyless reports whether kq is a keyless record's queue.
func (kq *keyQueue) keyless() bool { return kq.key[0] == keylessPrefix[0] }

// add queues records just read, skipping those already known and those of
// lanes no longer held at the epoch they were read at (epochs: lane ID to
// epoch when the read began; a lane that changed hands meanwhile may have
// had its records delivered by another relay). It reports how many it
// added.
func (q *queue) add(recs []Record, epochs map[int]int64) int {
	added := 0
	for _, rec := range recs {
		if h := q.lanes[rec.Lane]; h == nil || h.draining || h.epoch != epochs[rec.Lane] {
			continue
		}
		if _, ok := q.known[rec.ID]; ok {
			continue
		}
		if _, ok := q.settledDuring[rec.ID]; ok {
			continue // settled after the read began: its snapshot is stale
		}
		if _, ok := q.deadDuring[rec.Key]; ok && rec.Key != "" {
			continue // its key stopped behind a dead letter after the read began
		}
		k := queueKey(&rec)
		kq := q.keys[k]
		if kq == nil {
			kq = &keyQueue{key: k, lane: rec.Lane}
			q.keys[k] = kq
		}
		if !rec.NotBefore.IsZero() && len(kq.recs) == 0 && !kq.busy && rec.NotBefore.After(kq.notBefore) {
			kq.notBefore = rec.NotBefore // a retry scheduled by a former holder of the lane
		}
		kq.recs = append(kq.recs, rec)
		q.known[rec.ID] = rec.Seq
		q.queued++
		added++
		q.list(kq)
	}
	return added
}

func (q *queue) list(kq *keyQueue) {
	if !kq.listed {
		kq.listed = true
		q.order = append(q.order, kq)
	}
}

// next takes a batch of at most limit records from keys that are not busy,
// not held back and of usable lanes, marking those keys busy. With no batch
// to take, it returns the earliest time a held-back key becomes free (zero
// when none is held back).
func (q *queue) next(limit int, now time.Time) (batch []Record, wake time.Time) {
	live := q.order[:0]
	for _, kq := range q.order {
		if len(kq.recs) == 0 && !kq.busy {
			kq.listed = false
			if q.keys[kq.key] == kq {
				delete(q.keys, kq.key)
			}
			continue
		}
		live = append(live, kq)
		if len(batch) >= limit || kq.busy || len(kq.recs) == 0 {
			continue
		}
		h := q.lanes[kq.lane]
		if h == nil || !h.usable(now) {
			continue
		}
		if now.Before(kq.notBefore) {
			if wake.IsZero() || kq.notBefore.Before(wake) {
				wake = kq.notBefore
			}
			continue
		}
		n := min(len(kq.recs), limit-len(batch))
		batch = append(batch, kq.recs[:n]...)
		kq.recs = append([]Record(nil), kq.recs[n:]...)
		kq.busy = true
		q.queued -= n
		h.inflight += n
	}
	clear(q.order[len(live):])
	q.order = live
	if len(batch) > 0 {
		wake = time.Time{}
	}
	return batch, wake
}

// settled returns a batch's records to the queue after their outcomes:
// delivered and dead-lettered ones are forgotten; the rest go back to the
// front of their key, in order, held back until their RetryIn passed.
// With strict, a dead letter also forgets the rest of its key, which the
// store leaves out of reads until the dead letter is replayed. Records of a
// lane no longer held at the epoch the batch was taken at are forgotten.
func (q *queue) settled(recs []Record, outcomes []Outcome, epochs []Lane, strict bool, now time.Time) {
	stale := make(map[int]bool)
	for _, l := range epochs {
		if h := q.lanes[l.ID]; h == nil || h.epoch != l.Epoch {
			stale[l.ID] = true
		}
	}
	back := make(map[*keyQueue][]Record)
	var touched []*keyQueue
	dropKey := make(map[*keyQueue]bool)
	for i := range recs {
		rec := &recs[i]
		if h := q.lanes[rec.Lane]; h != nil && !stale[rec.Lane] {
			h.inflight--
		}
		kq := q.keys[queueKey(rec)]
		if kq == nil || !kq.busy || stale[rec.Lane] {
			delete(q.known, rec.ID) // its lane was lost meanwhile
			if kq != nil {
				if _, seen := back[kq]; !seen {
					back[kq] = nil
					touched = append(touched, kq)
				}
				dropKey[kq] = true
			}
			continue
		}
		if _, seen := back[kq]; !seen {
			back[kq] = nil
			touched = append(touched, kq)
		}
		switch o := outcomes[i]; o.Status {
		case Delivered:
			delete(q.known, rec.ID)
			q.settledWhileReading(rec.ID)
		case DeadLettered:
			delete(q.known, rec.ID)
			q.settledWhileReading(rec.ID)
			if strict && rec.Key != "" {
				dropKey[kq] = true
				if q.reading {
					q.deadDuring[rec.Key] = struct{}{}
				}
			}
		default:
			if o.Status == Retried {
				rec.Attempts++
				rec.LastError = o.Err.Error()
			}
			back[kq] = append(back[kq], *rec)
			if until := now.Add(o.RetryIn); o.RetryIn > 0 && until.After(kq.notBefore) {
				kq.notBefore = until
			}
		}
	}
	for _, kq := range touched {
		kq.busy = false
		if h := q.lanes[kq.lane]; h == nil || h.draining || dropKey[kq] {
			// Lost or given back, or (strict order) the key waits for
			// its dead letter: what was read of it is read again later,
			// the batch's records that would have gone back to the key
			// among them, so none of them stays held.
			for _, r := range back[kq] {
				delete(q.known, r.ID)
			}
			q.forget(kq)
			if q.reading && !kq.keyless() {
				// A read under way left out this batch's records (the
				// relay held them) and may return the key's later ones:
				// queued alone, they would overtake the records just
				// forgotten, which the next read finds again. The lane
				// may well be held at the read's epoch (a batch of an
				// earlier epoch, the lane lost and taken back since).
				q.deadDuring[kq.key] = struct{}{}
			}
			continue
		}
		if b := back[kq]; len(b) > 0 {
			kq.recs = append(b, kq.recs...)
			q.queued += len(b)
		}
		if len(kq.recs) > 0 {
			q.list(kq)
		}
	}
}

// settledWhileReading remembers id when a read is under way.
func (q *queue) settledWhileReading(id string) {
	if q.reading {
		q.settledDuring[id] = struct{}{}
	}
}

// forget drops the queued records of a key (not those in flight).
func (q *queue) forget(kq *keyQueue) {
	for _, r := range kq.recs {
		delete(q.known, r.ID)
	}
	q.queued -= len(kq.recs)
	kq.recs = nil
}

// dropLane forgets the queued records of a lane, which the relay lost or
// gives back. Records in flight are forgotten when they settle.
func (q *queue) dropLane(lane int) {
	for _, kq := range q.keys {
		if kq.lane == lane {
			q.forget(kq)
		}
	}
}

// ready counts the queued records that may go out soon: records of keys
// held back (a retry, a paused topic) or clogged (a batch in flight and at
// least clog records queued behind it) do not count, so that a queue full
// of them never stops the reads of other keys (a key with a slow batch
// and a backlog stopped every other key until the batch was settled).
// A busy key with fewer records queued counts: on a drain of many keys
// nearly every key is busy, and reads that left them all out came back
// empty, or slower for the keys they skipped (2 MariaDB relays drained at
// half the rate of one).
func (q *queue) ready(now time.Time) int {
	n := 0
	for _, kq := range q.order {
		if !q.clogged(kq) && !now.Before(kq.notBefore) {
			n += len(kq.recs)
		}
	}
	return n
}

// clogged reports whether kq has a batch in flight and at least clog
// records queued behind it.
func (q *queue) clogged(kq *keyQueue) bool {
	return q.clog > 0 && kq.busy && len(kq.recs) >= q.clog
}

// heldBack lists up to limit keys whose records wait (a retry, a paused
// topic) or that are clogged, for reads to leave out: their later records
// would only fill the queue, which ready does not count them in (a clogged
// key's whole backlog would be read).
func (q *queue) heldBack(now time.Time, limit int) []string {
	var keys []string
	for _, kq := range q.order {
		if len(keys) == limit {
			break
		}
		if !kq.keyless() && (now.Before(kq.notBefore) || q.clogged(kq)) {
			keys = append(keys, kq.key)
		}
	}
	return keys
}

// readable lists the lanes to read (held, usable and not draining) and
// their epochs.
func (q *queue) readable(now time.Time) ([]int, map[int]int64) {
	var ids []int
	epochs := make(map[int]int64)
	for id, h := range q.lanes {
		if h.usable(now) {
			ids = append(ids, id)
			epochs[id] = h.epoch
		}
	}
	return ids, epochs
}

// skipped lists the records read and not settled, for the next read to leave
// out: their IDs, and their Seqs as ranges of consecutive values.
func (q *queue) skipped() ([]string, []SeqRange) {
	ids := make([]string, 0, len(q.known))
	seqs := make([]int64, 0, len(q.known))
	for id, seq := range q.known {
		ids = append(ids, id)
		seqs = append(seqs, seq)
	}
	return ids, SeqRanges(seqs)
}

// held lists the lanes the relay holds, for SyncLanes.
func (q *queue) held() []Lane {
	ls := make([]Lane, 0, len(q.lanes))
	for id, h := range q.lanes {
		ls = append(ls, Lane{ID: id, Epoch: h.epoch})
	}
	return ls
}

// epochs lists the held lanes of recs at their epochs, for Settle.
func (q *queue) epochs(recs []Record) []Lane {
	seen := make(map[int]bool)
	var ls []Lane
	for _, r := range recs {
		if seen[r.Lane] {
			continue
		}
		seen[r.Lane] = true
		if h := q.lanes[r.Lane]; h != nil {
			ls = append(ls, Lane{ID: r.Lane, Epoch: h.epoch})
		}
	}
	return ls
}
