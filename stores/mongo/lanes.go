package mongostore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Field names of lane and relay documents.
const (
	fOwner      = "owner"       // string, "" when the lane is free
	fEpoch      = "epoch"       // int64, bumped when the lane changes hands
	fLeaseUntil = "lease_until" // date; null when the lane is free
	fSettles    = "settles"     // int64, settles fenced on the lane (transactions only)
)

// laneDoc is a lane document of "<Collection>_lanes".
type laneDoc struct {
	ID         int        `bson:"_id"`
	Owner      string     `bson:"owner"`
	Epoch      int64      `bson:"epoch"`
	LeaseUntil *time.Time `bson:"lease_until"`
}

func (d laneDoc) state() outbox.LaneState {
	st := outbox.LaneState{Lane: outbox.Lane{ID: d.ID, Epoch: d.Epoch}, Owner: d.Owner}
	if d.LeaseUntil != nil {
		st.Until = d.LeaseUntil.UTC()
	}
	return st
}

// relayDoc is a relay document of "<Collection>_relays".
type relayDoc struct {
	Owner      string    `bson:"_id"`
	LeaseUntil time.Time `bson:"lease_until"`
}

// errLockBusy is returned when the lanes lock stayed taken for lockWait.
var errLockBusy = errors.New("mongostore: another relay holds the lanes lock (FerretDB serializes lane changes); try again")

// laneChange runs fn, which changes lane documents: on servers whose
// updates are not atomic (FerretDB) under the lanes lock, elsewhere as is.
func (s *Store) laneChange(ctx context.Context, owner string, fn func(now time.Time) error) error {
	now, err := s.server.now(ctx)
	if err != nil {
		return err
	}
	if !s.server.isFerret() {
		return fn(now)
	}
	lock, err := s.lock.acquire(ctx, owner)
	if err != nil {
		return err
	}
	if lock == nil {
		return errLockBusy
	}
	defer lock.release(ctx)
	if now, err = s.server.now(ctx); err != nil {
		return err
	}
	if err := fn(now); err != nil {
		return err
	}
	if !lock.usable() {
		// The lock may have expired while fn wrote: say so, although
		// what fn did stays done.
		return fmt.Errorf("mongostore: a lane change took longer than %v under the lanes lock; the server is too slow", lockUseFor)
	}
	return nil
}

// heldBy is the filter of the lanes of held that owner holds at their
// epoch; nil when held is empty.
func heldBy(owner string, held []outbox.Lane) bson.D {
	if len(held) == 0 {
		return nil
	}
	or := make(bson.A, len(held))
	for i, l := range held {
		or[i] = bson.D{{Key: fID, Value: l.ID}, {Key: fEpoch, Value: l.Epoch}}
	}
	return bson.D{{Key: fOwner, Value: owner}, {Key: "$or", Value: or}}
}

// atEpochs is the filter of the lanes of given that are at their epoch,
// whoever holds them.
func atEpochs(given []outbox.Lane) bson.D {
	or := make(bson.A, len(given))
	for i, l := range given {
		or[i] = bson.D{{Key: fID, Value: l.ID}, {Key: fEpoch, Value: l.Epoch}}
	}
	return bson.D{{Key: "$or", Value: or}}
}

// SyncLanes implements [outbox.Store]: it upserts the relay's document,
// extends the leases of the lanes it still holds at their epoch (one
// updateMany), deletes expired relays, and reads every lane and the live
// relays. Times come from the server's clock as the store estimates it
// (see the package documentation).
func (s *Store) SyncLanes(ctx context.Context, p outbox.SyncParams) (outbox.LaneView, error) {
	if p.Owner == "" || p.Lease <= 0 {
		return outbox.LaneView{}, fmt.Errorf("%w: mongostore: SyncLanes needs an owner and a positive lease", outbox.ErrInvalidConfig)
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return outbox.LaneView{}, err
	}
	var now time.Time
	err := s.laneChange(ctx, p.Owner, func(t time.Time) error {
		now = t
		until := now.Add(p.Lease)
		_, err := s.relays.UpdateOne(ctx, bson.D{{Key: fID, Value: p.Owner}},
			bson.D{{Key: "$set", Value: bson.D{{Key: fLeaseUntil, Value: until}}}}, options.UpdateOne().SetUpsert(true))
		if err != nil && !mongo.IsDuplicateKeyError(err) { // a duplicate: its own concurrent sync created it
			return fail("sync lanes: record the relay", err)
		}
		if filter := heldBy(p.Owner, p.Held); filter != nil {
			_, err := s.lanes.UpdateMany(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: fLeaseUntil, Value: until}}}})
			if err != nil {
				return fail("sync lanes: renew", err)
			}
		}
		return nil
	})
	if err != nil {
		return outbox.LaneView{}, err
	}
	if _, err := s.relays.DeleteMany(ctx, bson.D{{Key: fLeaseUntil, Value: bson.D{{Key: "$lte", Value: now}}}}); err != nil {
		return outbox.LaneView{}, fail("sync lanes: forget expired relays", err)
	}
	lanes, err := s.readLanes(ctx)
	if err != nil {
		return outbox.LaneView{}, err
	}
	relays, err := s.liveRelays(ctx, now)
	if err != nil {
		return outbox.LaneView{}, err
	}
	view := outbox.LaneView{Now: now.UTC(), Lanes: make([]outbox.LaneState, len(lanes))}
	for i, l := range lanes {
		view.Lanes[i] = l.state()
	}
	for _, r := range relays {
		view.Relays = append(view.Relays, r.Owner)
	}
	return view, nil
}

// readLanes returns every lane document, by lane.
func (s *Store) readLanes(ctx context.Context) ([]laneDoc, error) {
	cur, err := s.lanes.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: fID, Value: 1}}))
	if err != nil {
		return nil, fail("read the lanes", err)
	}
	var lanes []laneDoc
	if err := cur.All(ctx, &lanes); err != nil {
		return nil, fail("read the lanes", err)
	}
	return lanes, nil
}

// liveRelays returns the relays whose lease runs after now, by owner.
func (s *Store) liveRelays(ctx context.Context, now time.Time) ([]relayDoc, error) {
	cur, err := s.relays.Find(ctx, bson.D{{Key: fLeaseUntil, Value: bson.D{{Key: "$gt", Value: now}}}},
		options.Find().SetSort(bson.D{{Key: fID, Value: 1}}))
	if err != nil {
		return nil, fail("read the relays", err)
	}
	var relays []relayDoc
	if err := cur.All(ctx, &relays); err != nil {
		return nil, fail("read the relays", err)
	}
	return relays, nil
}

// TakeLanes implements [outbox.Store]. Each lane is taken by one
// findOneAndUpdate whose filter is the lane at the caller's epoch, free or
// expired: atomic per document on MongoDB, and serialized by the lanes
// lock on FerretDB. Then the first p.Charge pending records that are due
// (not waiting out a retry delay) of the lanes taken from an expired
// owner, in Seq order, are charged an attempt (a
// find on the "pending" index and an updateMany). With transactions it all
// runs in one. Without, an error after lanes were taken gives them back
// (best effort) before it is returned.
func (s *Store) TakeLanes(ctx context.Context, p outbox.TakeParams) ([]outbox.Lane, error) {
	if p.Owner == "" || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: mongostore: TakeLanes needs an owner and a positive lease", outbox.ErrInvalidConfig)
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	if len(p.Lanes) == 0 {
		return nil, nil
	}
	var taken []outbox.Lane
	var expired []int
	take := func(ctx context.Context, now time.Time) error {
		taken, expired = taken[:0], expired[:0]
		for _, l := range p.Lanes {
			var before laneDoc
			err := s.lanes.FindOneAndUpdate(ctx,
				bson.D{{Key: fID, Value: l.ID}, {Key: fEpoch, Value: l.Epoch}, {Key: "$or", Value: bson.A{
					bson.D{{Key: fOwner, Value: ""}},
					bson.D{{Key: fLeaseUntil, Value: bson.D{{Key: "$lte", Value: now}}}},
				}}},
				bson.D{
					{Key: "$set", Value: bson.D{{Key: fOwner, Value: p.Owner}, {Key: fLeaseUntil, Value: now.Add(p.Lease)}}},
					{Key: "$inc", Value: bson.D{{Key: fEpoch, Value: int64(1)}}},
				},
				options.FindOneAndUpdate().SetReturnDocument(options.Before)).Decode(&before)
			if errors.Is(err, mongo.ErrNoDocuments) {
				continue // changed since the caller's view
			}
			if err != nil {
				return fail("take lanes", err)
			}
			taken = append(taken, outbox.Lane{ID: l.ID, Epoch: before.Epoch + 1})
			if before.Owner != "" {
				expired = append(expired, l.ID)
			}
		}
		return nil
	}
	if s.server.transactional() && !s.server.isFerret() {
		err := s.laneChange(ctx, p.Owner, func(now time.Time) error {
			return s.inTransaction(ctx, func(ctx context.Context) error {
				if err := take(ctx, now); err != nil {
					return err
				}
				return s.charge(ctx, expired, p.Charge, now)
			})
		})
		if err != nil {
			return nil, err
		}
		return taken, nil
	}
	// Without transactions: take (under the lock on FerretDB), then
	// charge, which needs no lock: the lanes are ours now. When either
	// fails after lanes were taken, they are given back, so that the
	// caller, who takes the error to mean that it got nothing, does not
	// leave them to expire and be charged again by whoever takes them next.
	var at time.Time
	err := s.laneChange(ctx, p.Owner, func(now time.Time) error { at = now; return take(ctx, now) })
	if err == nil {
		err = s.charge(ctx, expired, p.Charge, at)
	}
	if err != nil {
		if len(taken) > 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = s.ReleaseLanes(rctx, outbox.ReleaseLanesParams{Owner: p.Owner, Lanes: taken})
		}
		return nil, err
	}
	return taken, nil
}

// charge adds an attempt to the first n pending records of lanes that are
// due at now (no not_before, or one that has passed: a record waiting out
// a retry delay was not in flight), found with one find on the "pending"
// index; on FerretDB, which filters and
// sorts in its Go layer and pushes down only equalities, with one find per
// lane, merged here.
func (s *Store) charge(ctx context.Context, lanes []int, n int, now time.Time) error {
	if len(lanes) == 0 || n <= 0 {
		return nil
	}
	type pick struct {
		ID  string `bson:"_id"`
		Seq int64  `bson:"seq"`
	}
	find := func(lane bson.E) ([]pick, error) {
		opts := options.Find().SetSort(bson.D{{Key: fSeq, Value: 1}}).SetLimit(int64(n)).
			SetProjection(bson.D{{Key: fID, Value: 1}, {Key: fSeq, Value: 1}})
		if !s.server.isFerret() {
			opts.SetHint(pendingIndex)
		}
		due := bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: fNotBefore, Value: nil}}, // absent
			bson.D{{Key: fNotBefore, Value: bson.D{{Key: "$lte", Value: now}}}},
		}}
		cur, err := s.records.Find(ctx, bson.D{inState(statePending), lane, due}, opts)
		if err != nil {
			return nil, fail("take lanes: charge", err)
		}
		var picks []pick
		if err := cur.All(ctx, &picks); err != nil {
			return nil, fail("take lanes: charge", err)
		}
		return picks, nil
	}
	var picks []pick
	if s.server.isFerret() {
		for _, l := range lanes {
			more, err := find(bson.E{Key: fLane, Value: l})
			if err != nil {
				return err
			}
			picks = append(picks, more...)
		}
		slices.SortFunc(picks, func(a, b pick) int { return cmp.Compare(a.Seq, b.Seq) })
		picks = picks[:min(len(picks), n)]
	} else {
		var err error
		if picks, err = find(bson.E{Key: fLane, Value: bson.D{{Key: "$in", Value: lanes}}}); err != nil {
			return err
		}
	}
	ids := make([]string, len(picks))
	for i, p := range picks {
		ids[i] = p.ID
	}
	err := s.updateEach(ctx, ids, bson.D{inState(statePending)}, bson.D{{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: int32(1)}}}})
	return fail("take lanes: charge", err)
}

// ReleaseLanes implements [outbox.Store]: one updateMany frees the lanes
// p.Owner holds at their epoch; with p.Leave a deleteOne forgets the relay.
func (s *Store) ReleaseLanes(ctx context.Context, p outbox.ReleaseLanesParams) error {
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return err
	}
	if filter := heldBy(p.Owner, p.Lanes); filter != nil {
		err := s.laneChange(ctx, p.Owner, func(time.Time) error {
			_, err := s.lanes.UpdateMany(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: fOwner, Value: ""}, {Key: fLeaseUntil, Value: nil}}}})
			return fail("release lanes", err)
		})
		if err != nil {
			return err
		}
	}
	if p.Leave {
		if _, err := s.relays.DeleteOne(ctx, bson.D{{Key: fID, Value: p.Owner}}); err != nil {
			return fail("release lanes: forget the relay", err)
		}
	}
	return nil
}

// inTransaction runs fn in a transaction where the deployment has them
// (WithTransaction retries it after transient errors), else as is.
func (s *Store) inTransaction(ctx context.Context, fn func(ctx context.Context) error) error {
	if !s.server.transactional() || s.server.isFerret() {
		return fn(ctx)
	}
	sess, err := s.client.StartSession()
	if err != nil {
		return fail("start a session", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	var fnErr error
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		fnErr = fn(ctx)
		return nil, fnErr
	})
	if err != nil && !errors.Is(err, fnErr) {
		return fail("commit", err)
	}
	return err
}
