package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// StoreConfig configures a [Store]. The zero value is ready to use.
type StoreConfig struct {
	// Limits bound what Enqueue accepts.
	Limits outbox.Limits
}

// Store is an outbox held in memory. It implements [outbox.Store] and every
// optional capability. Safe for concurrent use.
type Store struct {
	limits outbox.Limits

	mu      sync.Mutex
	nextSeq int64
	pending []*entry // committed, undelivered records (dead ones too), by Seq
	byID    map[string]*entry
	waiters []chan struct{} // Listen channels
}

// entry is a committed record and its relay-side state.
type entry struct {
	outbox.Record
	leaseOwner  string
	leaseUntil  time.Time
	availableAt time.Time
	deliveredAt time.Time
	deadAt      time.Time
}

func (e *entry) delivered() bool { return !e.deliveredAt.IsZero() }
func (e *entry) dead() bool      { return !e.deadAt.IsZero() }

func (e *entry) leasedTo(owner string, now time.Time) bool {
	return e.leaseOwner == owner && now.Before(e.leaseUntil) && !e.delivered() && !e.dead()
}

// NewStore returns an empty in-memory outbox.
func NewStore(cfg StoreConfig) *Store {
	return &Store{limits: cfg.Limits, byID: make(map[string]*entry)}
}

var (
	_ outbox.Store             = (*Store)(nil)
	_ outbox.Listener          = (*Store)(nil)
	_ outbox.Cleaner           = (*Store)(nil)
	_ outbox.StatsReader       = (*Store)(nil)
	_ outbox.DeadLetterStore   = (*Store)(nil)
	_ outbox.DeadLetterBacklog = (*Store)(nil)
	_ outbox.Migrator          = (*Store)(nil)
	_ outbox.Pinger            = (*Store)(nil)
)

// ErrTxDone is returned by operations on a transaction that was already
// committed or rolled back.
var ErrTxDone = errors.New("memory: transaction already committed or rolled back")

// Tx is an in-memory transaction. Records enqueued in it take their
// sequence numbers at once, as a database sequence would, and become
// visible only when it commits, so a transaction that commits late leaves a
// gap below records that are already delivered.
type Tx struct {
	s       *Store
	mu      sync.Mutex
	entries []*entry
	done    bool
}

// Begin starts a transaction.
func (s *Store) Begin() *Tx { return &Tx{s: s} }

// Enqueue adds msgs to tx. It fills empty IDs and CreatedAt in msgs in place
// and rejects an invalid message (see [outbox.Prepare]) before adding any.
func (s *Store) Enqueue(ctx context.Context, tx *Tx, msgs ...outbox.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if tx == nil || tx.s != s {
		return fmt.Errorf("memory: Enqueue needs a transaction from this store's Begin: %w", outbox.ErrNoTransaction)
	}
	if err := outbox.Prepare(msgs, s.limits); err != nil {
		return err
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return ErrTxDone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if _, dup := s.byID[m.ID]; dup || slices.ContainsFunc(tx.entries, func(e *entry) bool { return e.ID == m.ID }) {
			return fmt.Errorf("memory: a message with ID %s is already in the outbox", m.ID)
		}
	}
	for _, m := range msgs {
		s.nextSeq++
		m.Headers = maps.Clone(m.Headers)
		m.Payload = slices.Clone(m.Payload)
		tx.entries = append(tx.entries, &entry{Record: outbox.Record{Message: m, Seq: s.nextSeq}})
	}
	return nil
}

// Commit makes the transaction's records visible to relays.
func (tx *Tx) Commit() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	s := tx.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range tx.entries {
		if _, dup := s.byID[e.ID]; dup {
			continue // another transaction committed the same ID first
		}
		s.byID[e.ID] = e
		i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].Seq > e.Seq })
		s.pending = slices.Insert(s.pending, i, e)
	}
	if len(tx.entries) > 0 {
		s.notifyLocked()
	}
	return nil
}

// Rollback discards the transaction's records. Rolling back a finished
// transaction is a no-op, so it can be deferred.
func (tx *Tx) Rollback() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.done = true
	tx.entries = nil
	return nil
}

// Claim implements [outbox.Store].
func (s *Store) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.Owner == "" || p.Limit <= 0 || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: Claim needs an owner, a positive limit and a positive lease", outbox.ErrInvalidConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.compactLocked()
	blocked := make(map[string]bool) // keys whose next record must wait
	var out []outbox.Record
	for _, e := range s.pending {
		if len(out) == p.Limit {
			break
		}
		key := e.Key
		if key != "" && blocked[key] {
			continue
		}
		if e.dead() {
			if p.StrictOrder && key != "" {
				blocked[key] = true
			}
			continue
		}
		deliverable := !now.Before(e.leaseUntil) && !now.Before(e.availableAt)
		if !deliverable {
			if key != "" {
				blocked[key] = true
			}
			continue
		}
		e.leaseOwner = p.Owner
		e.leaseUntil = now.Add(p.Lease)
		e.Attempts++
		out = append(out, e.snapshot())
	}
	return out, nil
}

// MarkDelivered implements [outbox.Store].
func (s *Store) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, id := range p.IDs {
		if e, ok := s.byID[id]; ok && !e.delivered() {
			e.deliveredAt = now
			e.deadAt = time.Time{}
			e.leaseOwner, e.leaseUntil = "", time.Time{}
		}
	}
	return nil
}

// ScheduleRetry implements [outbox.Store].
func (s *Store) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, r := range p.Retries {
		if e, ok := s.byID[r.ID]; ok && e.leasedTo(p.Owner, now) {
			e.LastError = r.Error
			e.availableAt = now.Add(r.Delay)
			e.leaseOwner, e.leaseUntil = "", time.Time{}
		}
	}
	return nil
}

// DeadLetter implements [outbox.Store].
func (s *Store) DeadLetter(ctx context.Context, p outbox.DeadLetterParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, f := range p.Letters {
		if e, ok := s.byID[f.ID]; ok && e.leasedTo(p.Owner, now) {
			e.LastError = f.Error
			e.deadAt = now
			e.leaseOwner, e.leaseUntil = "", time.Time{}
		}
	}
	return nil
}

// Release implements [outbox.Store].
func (s *Store) Release(ctx context.Context, p outbox.ReleaseParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, id := range p.IDs {
		if e, ok := s.byID[id]; ok && e.leasedTo(p.Owner, now) {
			e.Attempts--
			e.leaseOwner, e.leaseUntil = "", time.Time{}
			if p.Delay > 0 {
				e.availableAt = now.Add(p.Delay)
			}
		}
	}
	if len(p.IDs) > 0 && p.Delay <= 0 {
		s.notifyLocked() // records delayed are not claimable: waking relays would find nothing
	}
	return nil
}

// Listen implements [outbox.Listener]: the channel receives a value after
// every commit that added records.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := make(chan struct{}, 1)
	out := make(chan struct{})
	s.mu.Lock()
	s.waiters = append(s.waiters, in)
	s.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			s.waiters = slices.DeleteFunc(s.waiters, func(c chan struct{}) bool { return c == in })
			s.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-in:
				select {
				case out <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (s *Store) notifyLocked() {
	for _, c := range s.waiters {
		select {
		case c <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// Cleanup implements [outbox.Cleaner].
func (s *Store) Cleanup(ctx context.Context, p outbox.CleanupParams) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := time.Now().Add(-p.OlderThan)
	var old []*entry
	for _, e := range s.byID {
		if e.delivered() && e.deliveredAt.Before(cutoff) {
			old = append(old, e)
		}
	}
	slices.SortFunc(old, func(a, b *entry) int { return a.deliveredAt.Compare(b.deliveredAt) })
	if p.Limit > 0 && len(old) > p.Limit {
		old = old[:p.Limit]
	}
	for _, e := range old {
		delete(s.byID, e.ID)
	}
	s.compactLocked()
	return len(old), nil
}

// Stats implements [outbox.StatsReader].
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	if err := ctx.Err(); err != nil {
		return outbox.Stats{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var st outbox.Stats
	relays := make(map[string]*outbox.RelayLeases)
	for _, e := range s.pending {
		switch {
		case e.delivered():
			continue
		case e.dead():
			st.Dead++
			continue
		}
		st.Pending++
		if st.OldestPending.IsZero() || e.CreatedAt.Before(st.OldestPending) {
			st.OldestPending = e.CreatedAt
		}
		switch {
		case e.LastError != "" && e.Attempts > 0:
			st.Retrying++
		case e.LastError != "":
			st.Replayed++
		}
		if now.Before(e.leaseUntil) {
			st.Leased++
			rl := relays[e.leaseOwner]
			if rl == nil {
				rl = &outbox.RelayLeases{Owner: e.leaseOwner}
				relays[e.leaseOwner] = rl
			}
			rl.Leased++
			if e.leaseUntil.After(rl.Until) {
				rl.Until = e.leaseUntil
			}
		}
	}
	for _, rl := range relays {
		st.Relays = append(st.Relays, *rl)
	}
	slices.SortFunc(st.Relays, func(a, b outbox.RelayLeases) int {
		if a.Leased != b.Leased {
			return int(b.Leased - a.Leased)
		}
		return cmp.Compare(a.Owner, b.Owner)
	})
	return st, nil
}

// ListDead implements [outbox.DeadLetterStore].
func (s *Store) ListDead(ctx context.Context, p outbox.ListDeadParams) ([]outbox.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []outbox.DeadLetter
	for _, e := range s.pending {
		if len(out) == limit {
			break
		}
		if !e.dead() || e.Seq <= p.AfterSeq || (len(p.IDs) > 0 && !slices.Contains(p.IDs, e.ID)) {
			continue
		}
		out = append(out, outbox.DeadLetter{Record: e.snapshot(), DeadAt: e.deadAt})
	}
	return out, nil
}

// ReplayDead implements [outbox.DeadLetterStore].
func (s *Store) ReplayDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	n, err := s.eachDead(ctx, p, func(e *entry) {
		e.deadAt = time.Time{}
		e.Attempts = 0
		e.availableAt = time.Time{}
	})
	if n > 0 {
		s.mu.Lock()
		s.notifyLocked()
		s.mu.Unlock()
	}
	return n, err
}

// PurgeDead implements [outbox.DeadLetterStore].
func (s *Store) PurgeDead(ctx context.Context, p outbox.SelectDead) (int, error) {
	return s.eachDead(ctx, p, func(e *entry) {
		delete(s.byID, e.ID)
		e.deliveredAt = time.Now() // drops it from pending at the next compaction
	})
}

// WaitingBehindDead implements [outbox.DeadLetterBacklog].
func (s *Store) WaitingBehindDead(ctx context.Context, p outbox.SelectDead) (outbox.Waiting, error) {
	if err := ctx.Err(); err != nil {
		return outbox.Waiting{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := make(map[string]int64) // the earliest selected dead letter of each key
	for _, e := range s.pending {
		if e.dead() && !e.delivered() && e.Key != "" && (p.All || slices.Contains(p.IDs, e.ID)) {
			if seq, ok := first[e.Key]; !ok || e.Seq < seq {
				first[e.Key] = e.Seq
			}
		}
	}
	var w outbox.Waiting
	keys := make(map[string]bool)
	for _, e := range s.pending {
		if seq, ok := first[e.Key]; ok && e.Seq > seq && !e.dead() && !e.delivered() {
			w.Records++
			keys[e.Key] = true
		}
	}
	w.Keys = int64(len(keys))
	return w, nil
}

func (s *Store) eachDead(ctx context.Context, p outbox.SelectDead, do func(*entry)) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.pending {
		if e.dead() && (p.All || slices.Contains(p.IDs, e.ID)) {
			do(e)
			n++
		}
	}
	s.compactLocked()
	return n, nil
}

// Migrate implements [outbox.Migrator]; there is nothing to create.
func (s *Store) Migrate(ctx context.Context) error { return ctx.Err() }

// Ping implements [outbox.Pinger].
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

// Len returns how many records the store holds, delivered or not.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// compactLocked drops delivered records from the pending list.
func (s *Store) compactLocked() {
	s.pending = slices.DeleteFunc(s.pending, func(e *entry) bool { return e.delivered() })
}

// snapshot copies the record so callers cannot alter the store.
func (e *entry) snapshot() outbox.Record {
	r := e.Record
	r.Payload = slices.Clone(r.Payload)
	r.Headers = maps.Clone(r.Headers)
	return r
}
