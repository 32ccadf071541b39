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
	// Lanes is the lane count; zero means [outbox.DefaultLanes].
	Lanes int
}

// Store is an outbox held in memory. It implements [outbox.Store] and every
// optional capability. Safe for concurrent use.
type Store struct {
	limits outbox.Limits

	mu      sync.Mutex
	lanes   []outbox.LaneState
	relays  map[string]time.Time // live relays to the end of their lease
	nextSeq int64
	pending []*entry // committed, undelivered records (dead ones too), by Seq
	byID    map[string]*entry
	waiters []chan struct{} // Listen channels
}

// entry is a committed record and its relay-side state.
type entry struct {
	outbox.Record
	deliveredAt time.Time
	deadAt      time.Time
}

func (e *entry) delivered() bool { return !e.deliveredAt.IsZero() }
func (e *entry) dead() bool      { return !e.deadAt.IsZero() }
func (e *entry) pending() bool   { return !e.delivered() && !e.dead() }

// NewStore returns an empty in-memory outbox.
func NewStore(cfg StoreConfig) *Store {
	n := cfg.Lanes
	if n <= 0 {
		n = outbox.DefaultLanes
	}
	lanes := make([]outbox.LaneState, min(n, outbox.MaxLanes))
	for i := range lanes {
		lanes[i].ID = i
	}
	return &Store{limits: cfg.Limits, byID: make(map[string]*entry), lanes: lanes, relays: make(map[string]time.Time)}
}

var (
	_ outbox.Store             = (*Store)(nil)
	_ outbox.Listener          = (*Store)(nil)
	_ outbox.Cleaner           = (*Store)(nil)
	_ outbox.StatsReader       = (*Store)(nil)
	_ outbox.DeadLetterStore   = (*Store)(nil)
	_ outbox.DeadLetterBacklog = (*Store)(nil)
	_ outbox.Inspector         = (*Store)(nil)
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
		tx.entries = append(tx.entries, &entry{Record: outbox.Record{Message: m, Seq: s.nextSeq, Lane: outbox.LaneOf(m.Key, m.ID, len(s.lanes))}})
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

// SyncLanes implements [outbox.Store].
func (s *Store) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	if err := ctx.Err(); err != nil {
		return outbox.LaneView{}, err
	}
	if p.Owner == "" || p.Lease <= 0 {
		return outbox.LaneView{}, fmt.Errorf("%w: SyncLanes needs an owner and a positive lease", outbox.ErrInvalidConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.relays[p.Owner] = now.Add(p.Lease)
	for _, l := range p.Held {
		if s.heldLocked(p.Owner, l) {
			s.lanes[l.ID].Until = now.Add(p.Lease)
		}
	}
	view := outbox.LaneView{Now: now, Lanes: slices.Clone(s.lanes)}
	for owner, until := range s.relays {
		if now.Before(until) {
			view.Relays = append(view.Relays, owner)
		} else {
			delete(s.relays, owner)
		}
	}
	slices.Sort(view.Relays)
	return view, nil
}

// heldLocked reports whether owner holds lane l at its epoch.
func (s *Store) heldLocked(owner string, l outbox.Lane) bool {
	if l.ID < 0 || l.ID >= len(s.lanes) {
		return false
	}
	st := s.lanes[l.ID]
	return st.Owner == owner && st.Epoch == l.Epoch
}

// TakeLanes implements [outbox.Store].
func (s *Store) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.Owner == "" || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: TakeLanes needs an owner and a positive lease", outbox.ErrInvalidConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var taken []outbox.Lane
	expired := make(map[int]bool)
	for _, l := range p.Lanes {
		if l.ID < 0 || l.ID >= len(s.lanes) {
			continue
		}
		st := &s.lanes[l.ID]
		if st.Epoch != l.Epoch || (st.Owner != "" && now.Before(st.Until)) {
			continue
		}
		if st.Owner != "" {
			expired[l.ID] = true
		}
		st.Owner, st.Epoch, st.Until = p.Owner, st.Epoch+1, now.Add(p.Lease)
		taken = append(taken, st.Lane)
	}
	charged := 0
	for _, e := range s.pending {
		if charged >= p.Charge || len(expired) == 0 {
			break
		}
		if e.pending() && expired[e.Lane] && !now.Before(e.NotBefore) {
			e.Attempts++
			charged++
		}
	}
	return taken, nil
}

// ReleaseLanes implements [outbox.Store].
func (s *Store) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range p.Lanes {
		if s.heldLocked(p.Owner, l) {
			s.lanes[l.ID].Owner, s.lanes[l.ID].Until = "", time.Time{}
		}
	}
	if p.Leave {
		delete(s.relays, p.Owner)
	}
	return nil
}

// Read implements [outbox.Store].
func (s *Store) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.Limit <= 0 {
		return nil, fmt.Errorf("%w: Read needs a positive limit", outbox.ErrInvalidConfig)
	}
	lanes := make(map[int]bool, len(p.Lanes))
	for _, l := range p.Lanes {
		lanes[l] = true
	}
	skip := make(map[string]bool, len(p.SkipKeys))
	for _, k := range p.SkipKeys {
		skip[k] = true
	}
	skipID := make(map[string]bool, len(p.SkipIDs))
	for _, id := range p.SkipIDs {
		skipID[id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compactLocked()
	deadKeys := make(map[string]bool) // strict order: keys behind a dead letter
	var out []outbox.Record
	for _, e := range s.pending {
		if len(out) == p.Limit {
			break
		}
		if !lanes[e.Lane] {
			continue
		}
		if e.dead() {
			if p.StrictOrder && e.Key != "" {
				deadKeys[e.Key] = true
			}
			continue
		}
		if e.Seq <= p.AfterSeq || skipID[e.ID] || (e.Key != "" && (skip[e.Key] || deadKeys[e.Key])) {
			continue
		}
		out = append(out, e.snapshot())
	}
	return out, nil
}

// Settle implements [outbox.Store].
func (s *Store) Settle(ctx context.Context, p outbox.SettleParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	epochs := make(map[int]int64, len(p.Lanes))
	for _, l := range p.Lanes {
		epochs[l.ID] = l.Epoch
	}
	// fenced finds a pending record whose lane is at the given epoch.
	fenced := func(id string) *entry {
		e, ok := s.byID[id]
		if !ok || !e.pending() {
			return nil
		}
		if epoch, ok := epochs[e.Lane]; !ok || s.lanes[e.Lane].Epoch != epoch {
			return nil
		}
		return e
	}
	for _, id := range p.Delivered {
		if e := fenced(id); e != nil {
			e.deliveredAt = now
			if !p.Retain {
				delete(s.byID, id) // gone at the next compaction of pending
			}
		}
	}
	for _, r := range p.Retries {
		if e := fenced(r.ID); e != nil {
			e.Attempts++
			e.LastError = r.Error
			e.NotBefore = now.Add(r.Delay)
		}
	}
	for _, f := range p.Dead {
		if e := fenced(f.ID); e != nil {
			e.Attempts++
			e.LastError = f.Error
			e.deadAt = now
		}
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
	st := outbox.Stats{Lanes: len(s.lanes)}
	lag := make(map[int]*outbox.LaneLag)
	topics := make(map[string]*outbox.TopicStats)
	for _, e := range s.pending {
		if e.delivered() {
			continue
		}
		t := topics[e.Topic]
		if t == nil {
			t = &outbox.TopicStats{Topic: e.Topic}
			topics[e.Topic] = t
		}
		if e.dead() {
			st.Dead++
			t.Dead++
			continue
		}
		st.Pending++
		t.Pending++
		if t.OldestPending.IsZero() || e.CreatedAt.Before(t.OldestPending) {
			t.OldestPending = e.CreatedAt
		}
		if st.OldestPending.IsZero() || e.CreatedAt.Before(st.OldestPending) {
			st.OldestPending = e.CreatedAt
		}
		switch {
		case e.Attempts > 0:
			st.Retrying++
		case e.LastError != "":
			st.Replayed++
		}
		l := lag[e.Lane]
		if l == nil {
			l = &outbox.LaneLag{Lane: e.Lane, Owner: s.lanes[e.Lane].Owner, OldestPending: e.CreatedAt}
			lag[e.Lane] = l
		}
		l.Pending++
		if e.CreatedAt.Before(l.OldestPending) {
			l.OldestPending = e.CreatedAt
		}
	}
	for _, l := range lag {
		st.Lagging = append(st.Lagging, *l)
	}
	slices.SortFunc(st.Lagging, func(a, b outbox.LaneLag) int {
		return cmp.Or(a.OldestPending.Compare(b.OldestPending), cmp.Compare(a.Lane, b.Lane))
	})
	st.Lagging = st.Lagging[:min(len(st.Lagging), 10)]
	for _, t := range topics {
		st.Topics = append(st.Topics, *t)
	}
	st.Topics = outbox.SortTopicStats(st.Topics)
	for owner, until := range s.relays {
		if !now.Before(until) {
			continue
		}
		rl := outbox.RelayLanes{Owner: owner, Until: until}
		for _, l := range s.lanes {
			if l.Owner == owner && now.Before(l.Until) {
				rl.Lanes++
			}
		}
		st.Relays = append(st.Relays, rl)
	}
	slices.SortFunc(st.Relays, func(a, b outbox.RelayLanes) int {
		return cmp.Or(cmp.Compare(b.Lanes, a.Lanes), cmp.Compare(a.Owner, b.Owner))
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
		e.NotBefore = time.Time{}
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

// Inspect implements [outbox.Inspector].
func (s *Store) Inspect(ctx context.Context, p outbox.InspectParams) ([]outbox.InspectedRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inspected := func(e *entry) outbox.InspectedRecord {
		return outbox.InspectedRecord{Record: e.snapshot(), DeadAt: e.deadAt, DeliveredAt: e.deliveredAt}
	}
	if p.ID != "" {
		if e, ok := s.byID[p.ID]; ok {
			return []outbox.InspectedRecord{inspected(e)}, nil
		}
		return nil, nil
	}
	var out []outbox.InspectedRecord
	for _, e := range s.pending {
		if len(out) == limit {
			break
		}
		if e.Key == p.Key && !e.delivered() {
			out = append(out, inspected(e))
		}
	}
	return out, nil
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
