package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// laneLoop keeps the relay's share of the lanes: every third of the lease
// (and at once when a drained lane can be given back) it renews its lanes
// and its membership with SyncLanes, forgets the lanes it lost, takes free
// or expired lanes up to its fair share, and gives back what exceeds it
// once the batches in flight on those lanes are settled. While the relay
// holds fewer or more lanes than its share (a relay joined or left), it
// syncs every rebalanceEvery instead, so that lanes given back are taken
// within a fraction of a second, not a third of the lease.
func (rn *run) laneLoop(ctx context.Context) {
	r := rn.r
	every := max(r.cfg.Lease/3, time.Millisecond)
	lastSync := time.Now()
	for {
		start := time.Now()
		balanced, renewed, err := rn.syncLanes(ctx, start)
		if renewed {
			// The lanes were renewed even if the round failed later (a
			// take of more lanes): only renewals that fail for a lease
			// mean the lanes are lost. Counting a failed take as one
			// made the relay forget the lanes it held and renewed, and
			// publish them no more while takes failed.
			lastSync = start
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !renewed {
				// A round that renewed the lanes failed at a take (or a
				// release of lanes it keeps): the store serves the lanes
				// held, so their reads need no pause.
				r.storeDown.failure(err)
			}
			if time.Since(lastSync) > r.cfg.Lease {
				rn.loseAll("its lanes could not be renewed within the lease")
			}
		}
		wait := every
		if err == nil && !balanced {
			wait = min(every, rebalanceEvery)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-rn.sync:
			t.Stop()
		}
	}
}

// rebalanceEvery is how often a relay syncs while it holds fewer or more
// lanes than its fair share.
const rebalanceEvery = 200 * time.Millisecond

// syncLanes is one round of the lane loop.
// It reports whether the relay holds its fair share, and whether SyncLanes
// renewed its lanes (true even when a later step failed).
func (rn *run) syncLanes(ctx context.Context, start time.Time) (balanced, renewed bool, err error) {
	r := rn.r
	ev := LaneEvent{Owner: r.cfg.Owner}
	defer func() {
		if obs := r.cfg.Observer; obs != nil {
			obs.ObserveLanes(ev)
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	defer cancel()
	defer func() {
		if ev.Err != nil && cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			ev.Err = fmt.Errorf("%w: lane leasing took longer than ReadTimeout (%v): %w", ErrReadTimeout, r.cfg.ReadTimeout, ev.Err)
			err = ev.Err
		}
	}()

	rn.mu.Lock()
	held := rn.q.held()
	// Release the drained lanes that were given back.
	var drained []Lane
	for id, h := range rn.q.lanes {
		if h.draining && h.inflight == 0 {
			drained = append(drained, Lane{ID: id, Epoch: h.epoch})
		}
	}
	rn.mu.Unlock()

	if len(drained) > 0 {
		err := r.store.ReleaseLanes(cctx, ReleaseLanesParams{Owner: r.cfg.Owner, Lanes: drained})
		if err != nil {
			ev.Err = fmt.Errorf("release lanes: %w", err)
			return false, false, ev.Err
		}
		rn.mu.Lock()
		for _, l := range drained {
			if h := rn.q.lanes[l.ID]; h != nil && h.epoch == l.Epoch {
				delete(rn.q.lanes, l.ID)
			}
		}
		rn.mu.Unlock()
		ev.Released = len(drained)
		held = slices.DeleteFunc(held, func(l Lane) bool { return slices.Contains(drained, l) })
	}

	view, err := r.store.SyncLanes(cctx, SyncParams{Owner: r.cfg.Owner, Lease: r.cfg.Lease, Held: held})
	if err != nil {
		ev.Err = fmt.Errorf("sync lanes: %w", err)
		return false, false, ev.Err
	}
	renewed = true
	until := start.Add(r.cfg.Lease)

	// Lanes the store holds for this run at an epoch it does not hold:
	// renewed or taken by a call that failed on the relay's side but
	// committed, after the relay forgot them (loseAll) or before it knew
	// them. Nobody publishes them until they expire, and taking them back
	// then charges their records as a dead relay's: release them, and
	// take them as free below. Only lanes this run took count: those of a
	// former run under the same owner (which may have died publishing)
	// expire and are charged like any dead relay's.
	rn.mu.Lock()
	var orphans []Lane
	for _, l := range view.Lanes {
		h := rn.q.lanes[l.ID]
		if after, took := rn.tookAbove[l.ID]; took && l.Owner == r.cfg.Owner && l.Epoch > after && (h == nil || h.epoch != l.Epoch) {
			orphans = append(orphans, l.Lane)
		}
	}
	rn.mu.Unlock()
	if len(orphans) > 0 {
		if err := r.store.ReleaseLanes(cctx, ReleaseLanesParams{Owner: r.cfg.Owner, Lanes: orphans}); err != nil {
			ev.Err = fmt.Errorf("release lanes: %w", err)
			return false, true, ev.Err
		}
		ev.Released += len(orphans)
		for i, l := range view.Lanes {
			if slices.Contains(orphans, l.Lane) {
				view.Lanes[i].Owner, view.Lanes[i].Until = "", time.Time{}
			}
		}
	}

	mine := make(map[int]int64)
	for _, l := range view.Lanes {
		if l.Owner == r.cfg.Owner {
			mine[l.ID] = l.Epoch
		}
	}
	rn.mu.Lock()
	for id, h := range rn.q.lanes {
		if e, ok := mine[id]; ok && e == h.epoch {
			h.until = until
			continue
		}
		delete(rn.q.lanes, id)
		rn.q.dropLane(id)
		ev.Lost++
	}
	if ev.Lost > 0 {
		r.log.Warn("outbox: lanes lost to another relay (this relay was too slow to renew them); their records in flight may be published twice",
			slog.Int("lost", ev.Lost))
	}
	count := len(rn.q.lanes)
	share := fairShare(len(view.Lanes), view.Relays, r.cfg.Owner)

	// Give back what exceeds the fair share: the highest lanes first.
	gaveBack := false
	if active := rn.activeLanes(); len(active) > share {
		slices.Sort(active)
		for _, id := range active[share:] {
			h := rn.q.lanes[id]
			h.draining = true
			rn.q.dropLane(id)
			gaveBack = true
			if h.inflight == 0 {
				signal(rn.sync)
			}
		}
	}
	if ev.Lost > 0 || gaveBack {
		// The records dropped may have filled the read-ahead, and a full
		// reader waits for room that only workers signal otherwise: with
		// those records unpublishable (the lease had run out locally, so
		// no worker took them, and none is in flight), nothing would wake
		// it, and the lanes still held went unread until a notification
		// or an hour later.
		signal(rn.room)
	}

	// Take free or expired lanes up to the fair share: free ones first.
	var want []Lane
	if need := share - count; need > 0 {
		var free, expired []Lane
		for _, l := range view.Lanes {
			_, held := rn.q.lanes[l.ID]
			switch {
			case held:
			case l.Owner == "":
				free = append(free, l.Lane)
			case !l.Until.After(view.Now):
				expired = append(expired, l.Lane)
			}
		}
		want = append(free, expired...)
		want = want[:min(len(want), need)]
	}
	rn.mu.Unlock()
	for _, l := range want {
		rn.tookAbove[l.ID] = l.Epoch
	}
	if len(want) > 0 {
		taken, err := r.store.TakeLanes(cctx, TakeParams{
			Owner: r.cfg.Owner, Lease: r.cfg.Lease, Lanes: want,
			Charge: r.cfg.BatchSize * (r.cfg.Concurrency + 1),
		})
		if err != nil {
			ev.Err = fmt.Errorf("take lanes: %w", err)
			return false, true, ev.Err
		}
		rn.mu.Lock()
		for _, l := range taken {
			rn.q.lanes[l.ID] = &laneHold{epoch: l.Epoch, until: until}
		}
		ev.Taken = len(taken)
		rn.mu.Unlock()
		if len(taken) > 0 {
			r.Notify()
		}
	}
	rn.mu.Lock()
	ev.Held = len(rn.q.lanes)
	balanced = len(rn.activeLanes()) == share && ev.Held == share
	rn.mu.Unlock()
	ev.Relays = len(view.Relays)
	return balanced, true, nil
}

// activeLanes lists the held lanes not being given back. rn.mu is held.
func (rn *run) activeLanes() []int {
	var ids []int
	for id, h := range rn.q.lanes {
		if !h.draining {
			ids = append(ids, id)
		}
	}
	return ids
}

// loseAll forgets every lane, when the relay could not renew them in time.
func (rn *run) loseAll(why string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if len(rn.q.lanes) == 0 {
		return
	}
	rn.r.log.Error("outbox: relay stops publishing until it can renew its lanes: "+why, slog.Int("lanes", len(rn.q.lanes)))
	for id := range rn.q.lanes {
		delete(rn.q.lanes, id)
		rn.q.dropLane(id)
	}
	signal(rn.room) // see syncLanes: the reader may wait on a queue just emptied
}

// leave gives every lane back and ends the membership, after the workers
// stopped.
func (rn *run) leave() {
	r := rn.r
	rn.mu.Lock()
	held := rn.q.held()
	rn.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PublishTimeout)
	defer cancel()
	err := r.store.ReleaseLanes(ctx, ReleaseLanesParams{Owner: r.cfg.Owner, Lanes: held, Leave: true})
	if obs := r.cfg.Observer; obs != nil {
		ev := LaneEvent{Owner: r.cfg.Owner, Released: len(held), Err: err}
		if err != nil {
			ev.Released, ev.Held = 0, len(held)
		}
		obs.ObserveLanes(ev)
	}
	if err != nil {
		r.log.Warn("outbox: could not give the lanes back; other relays take them when the lease expires",
			slog.Int("lanes", len(held)), slog.Any("error", err))
	}
}

// fairShare is how many of n lanes the relay owner should hold among the
// live relays: n/len(relays), one more for the first n%len(relays) of them
// in name order, so that the shares add up to n.
func fairShare(n int, relays []string, owner string) int {
	rs := slices.Clone(relays)
	if !slices.Contains(rs, owner) {
		rs = append(rs, owner)
	}
	slices.Sort(rs)
	i := slices.Index(rs, owner)
	share := n / len(rs)
	if i < n%len(rs) {
		share++
	}
	return share
}
