package conformance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// testTimeout bounds every suite test: 3 minutes, or the duration in
// OUTBOX_TEST_TIMEOUT. It is a deadlock guard, never an assertion about
// speed.
var testTimeout = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("OUTBOX_TEST_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 3 * time.Minute
}()

// hour is a lease or delay that outlives any test.
const hour = time.Hour

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newMessages returns n messages of topic and key with payloads "<key>-<i>".
func newMessages(topic, key string, n int) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: topic, Key: key, Payload: fmt.Appendf(nil, "%s-%d", key, i)}
	}
	return msgs
}

// write enqueues msgs in one transaction and commits it. It returns msgs
// with their IDs assigned.
func write(t *testing.T, ctx context.Context, ob Outbox, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	if err := tryWrite(ctx, ob, msgs...); err != nil {
		t.Fatalf("writing %d messages: %v", len(msgs), err)
	}
	return msgs
}

func tryWrite(ctx context.Context, ob Outbox, msgs ...outbox.Message) error {
	tx, err := ob.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// relay is the suite's stand-in for a relay: an owner and the lanes it
// holds, driving the Store methods directly.
type relay struct {
	t     *testing.T
	ctx   context.Context
	s     outbox.Store
	owner string
	lease time.Duration
	lanes []outbox.Lane
}

// hold registers owner as a relay and takes every lane that is free or
// expired. It fails t when the store errs, not when lanes are held by
// others (the relay then holds fewer, perhaps none).
func hold(t *testing.T, ctx context.Context, s outbox.Store, owner string, lease time.Duration) *relay {
	t.Helper()
	r := &relay{t: t, ctx: ctx, s: s, owner: owner, lease: lease}
	r.takeFree(0)
	return r
}

// view calls SyncLanes for the relay, renewing what it holds.
func (r *relay) view() outbox.LaneView {
	r.t.Helper()
	v, err := r.s.SyncLanes(r.ctx, outbox.SyncParams{Owner: r.owner, Lease: r.lease, Held: r.lanes})
	if err != nil {
		r.t.Fatalf("SyncLanes(owner %s): %v", r.owner, err)
	}
	return v
}

// takeFree takes every lane that the view shows free or expired, charging
// charge records, and returns the lanes taken.
func (r *relay) takeFree(charge int) []outbox.Lane {
	r.t.Helper()
	v := r.view()
	var want []outbox.Lane
	for _, l := range v.Lanes {
		if l.Owner == "" || !l.Until.After(v.Now) {
			want = append(want, l.Lane)
		}
	}
	return r.take(want, charge)
}

// take calls TakeLanes for the given lanes at the given epochs.
func (r *relay) take(want []outbox.Lane, charge int) []outbox.Lane {
	r.t.Helper()
	if len(want) == 0 {
		return nil
	}
	taken, err := r.s.TakeLanes(r.ctx, outbox.TakeParams{Owner: r.owner, Lease: r.lease, Lanes: want, Charge: charge})
	if err != nil {
		r.t.Fatalf("TakeLanes(owner %s, %d lanes): %v", r.owner, len(want), err)
	}
	for _, l := range taken {
		r.lanes = slices.DeleteFunc(r.lanes, func(h outbox.Lane) bool { return h.ID == l.ID })
		r.lanes = append(r.lanes, l)
	}
	return taken
}

func (r *relay) laneIDs() []int {
	ids := make([]int, len(r.lanes))
	for i, l := range r.lanes {
		ids[i] = l.ID
	}
	slices.Sort(ids)
	return ids
}

// read reads the relay's lanes from the head.
func (r *relay) read(limit int) []outbox.Record {
	r.t.Helper()
	return r.readWith(outbox.ReadParams{Limit: limit})
}

// readWith reads the relay's lanes with p (its Lanes set by the relay).
func (r *relay) readWith(p outbox.ReadParams) []outbox.Record {
	r.t.Helper()
	if len(r.lanes) == 0 {
		return nil
	}
	p.Lanes = r.laneIDs()
	recs, err := r.s.Read(r.ctx, p)
	if err != nil {
		r.t.Fatalf("Read(owner %s, %d lanes): %v", r.owner, len(p.Lanes), err)
	}
	return recs
}

func (r *relay) settle(p outbox.SettleParams) {
	r.t.Helper()
	p.Lanes = r.lanes
	if err := r.s.Settle(r.ctx, p); err != nil {
		r.t.Fatalf("Settle(owner %s): %v", r.owner, err)
	}
}

// deliver settles recs delivered, keeping them (Retain), so that the
// tests of Cleanup have delivered records to delete.
func (r *relay) deliver(recs ...outbox.Record) {
	r.t.Helper()
	r.settle(outbox.SettleParams{Delivered: recordIDs(recs), Retain: true})
}

// deliverAndDelete settles recs delivered without keeping them.
func (r *relay) deliverAndDelete(recs ...outbox.Record) {
	r.t.Helper()
	r.settle(outbox.SettleParams{Delivered: recordIDs(recs)})
}

func (r *relay) retry(reason string, delay time.Duration, recs ...outbox.Record) {
	r.t.Helper()
	var retries []outbox.Retry
	for _, rec := range recs {
		retries = append(retries, outbox.Retry{ID: rec.ID, Error: reason, Delay: delay})
	}
	r.settle(outbox.SettleParams{Retries: retries})
}

func (r *relay) dead(reason string, recs ...outbox.Record) {
	r.t.Helper()
	var dead []outbox.Failure
	for _, rec := range recs {
		dead = append(dead, outbox.Failure{ID: rec.ID, Error: reason})
	}
	r.settle(outbox.SettleParams{Dead: dead})
}

// release gives every lane back; with leave, the relay also leaves.
func (r *relay) release(leave bool) {
	r.t.Helper()
	if err := r.s.ReleaseLanes(r.ctx, outbox.ReleaseLanesParams{Owner: r.owner, Lanes: r.lanes, Leave: leave}); err != nil {
		r.t.Fatalf("ReleaseLanes(owner %s): %v", r.owner, err)
	}
	r.lanes = nil
}

// allLanes lists the lane IDs of an outbox with n lanes (0: the default).
func allLanes(n int) []int {
	if n <= 0 {
		n = outbox.DefaultLanes
	}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	return ids
}

// pending reads up to limit pending records of every lane of an outbox
// with the default lane count, holding nothing: Read needs no lease.
func pending(t *testing.T, ctx context.Context, s outbox.Store, limit int) []outbox.Record {
	t.Helper()
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: allLanes(0), Limit: limit})
	if err != nil {
		t.Fatalf("Read(every lane): %v", err)
	}
	return recs
}

// drain takes the lanes as owner, delivers everything pending in read
// order, gives the lanes back, and returns what it delivered.
func drain(t *testing.T, ctx context.Context, s outbox.Store, owner string) []outbox.Record {
	t.Helper()
	r := hold(t, ctx, s, owner, hour)
	defer r.release(true)
	var all []outbox.Record
	for {
		recs := r.read(100)
		if len(recs) == 0 {
			return all
		}
		r.deliver(recs...)
		all = append(all, recs...)
	}
}

func recordIDs(recs []outbox.Record) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

func messageIDs(msgs []outbox.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// pick returns the records of recs with the given IDs.
func pick(recs []outbox.Record, ids ...string) []outbox.Record {
	var out []outbox.Record
	for _, r := range recs {
		if slices.Contains(ids, r.ID) {
			out = append(out, r)
		}
	}
	return out
}

// without returns the records of recs without the given IDs.
func without(recs []outbox.Record, ids ...string) []outbox.Record {
	var out []outbox.Record
	for _, r := range recs {
		if !slices.Contains(ids, r.ID) {
			out = append(out, r)
		}
	}
	return out
}

func hasID(recs []outbox.Record, id string) bool {
	for _, r := range recs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// eventually polls cond until it holds; it fails t only if ctx ends first.
// It waits for things that take real time (a lease expiring), and asserts
// nothing about how long they take.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func requireTransactions(t *testing.T, h StoreHarness) {
	t.Helper()
	if h.WithoutTransactions != "" {
		t.Skipf("needs transactions: %s", h.WithoutTransactions)
	}
}

// requireConcurrentWriters skips tests that keep a write transaction open
// while other transactions write.
func requireConcurrentWriters(t *testing.T, h StoreHarness) {
	t.Helper()
	requireTransactions(t, h)
	if h.SingleWriter != "" {
		t.Skipf("needs concurrent write transactions: %s", h.SingleWriter)
	}
}
