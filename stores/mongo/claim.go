package mongostore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// candidate is a pending record as the claim's scan sees it.
type candidate struct {
	ID          string    `bson:"_id"`
	Key         string    `bson:"key"`
	Seq         int64     `bson:"seq"`
	LeaseUntil  time.Time `bson:"lease_until"`
	AvailableAt time.Time `bson:"available_at"`
}

var candidateProjection = bson.D{
	{Key: fID, Value: 1}, {Key: fKey, Value: 1}, {Key: fSeq, Value: 1},
	{Key: fLeaseUntil, Value: 1}, {Key: fAvailableAt, Value: 1},
}

// Claim implements [outbox.Store]. Under the claim lock (see lock.go) it
//
//  1. scans pending records in sequence order (the "pending" index),
//     skipping every key whose earliest pending record is leased or waits
//     for a retry (and, with StrictOrder, every key behind a dead letter),
//     and picks up to p.Limit deliverable records;
//  2. leases them with one updateMany whose filter repeats the
//     deliverability test, stamping a random claim token;
//  3. reads back, in one find, the records that carry its token together
//     with any pending record of a picked key that is older than the first
//     one picked, and returns a picked key's records only if there is none
//     such and it got all of the key's picked records; the others it
//     releases at once.
//
// Step 3 is what makes the claim correct whatever the scan missed: a
// transaction that commits a key's record commits after every earlier
// record of that key (the key's counter serializes them), so once a record
// is visible its predecessors are too, and a check made after the lease is
// taken sees them. Round trips: lock, scan (one per cursor batch), update,
// read back, unlock; two more with StrictOrder (the dead letters' keys,
// before and after the scan).
//
// Lease and retry times are compared with the server's clock as the store
// estimates it (see the package documentation).
func (s *Store) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	if p.Owner == "" || p.Limit <= 0 || p.Lease <= 0 {
		return nil, fmt.Errorf("%w: mongostore: Claim needs an owner, a positive limit and a positive lease", outbox.ErrInvalidConfig)
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	lock, err := s.lock.acquire(ctx, p.Owner)
	if err != nil || lock == nil {
		return nil, err
	}
	defer lock.release(ctx)

	now, err := s.server.now(ctx)
	if err != nil {
		return nil, err
	}
	var deadFrom map[string]int64
	if p.StrictOrder {
		if deadFrom, err = s.deadKeys(ctx, nil); err != nil {
			return nil, err
		}
	}
	picked, err := s.scan(ctx, now, p.Limit, deadFrom)
	if err != nil || len(picked) == 0 {
		return nil, err
	}
	if p.StrictOrder {
		// A leased head of a picked key may have been dead-lettered after
		// the first look at the dead letters and before the scan read it.
		if picked, err = s.dropBehindDead(ctx, picked); err != nil || len(picked) == 0 {
			return nil, err
		}
	}
	if !lock.usable() {
		return nil, nil // too slow to trust the lock; the next claim starts over
	}

	token := newToken()
	ids := make([]string, len(picked))
	for i, c := range picked {
		ids[i] = c.ID
	}
	err = s.updateEach(ctx, ids,
		bson.D{inState(statePending),
			{Key: fLeaseUntil, Value: bson.D{{Key: "$lte", Value: now}}},
			{Key: fAvailableAt, Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: fLeaseOwner, Value: p.Owner},
				{Key: fLeaseUntil, Value: now.Add(p.Lease)}, {Key: fLeaseToken, Value: token}}},
			{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: int32(1)}}},
		})
	if err != nil {
		return nil, fail("claim", err)
	}
	return s.confirm(ctx, p, picked, token)
}

// scan returns up to limit deliverable records that head their key, in
// sequence order, reading the pending index from the start.
func (s *Store) scan(ctx context.Context, now time.Time, limit int, deadFrom map[string]int64) ([]candidate, error) {
	batch := int32(min(max(2*limit, 100), 5000))
	cur, err := s.records.Find(ctx, bson.D{inState(statePending)},
		options.Find().SetSort(bson.D{{Key: fSeq, Value: 1}}).
			SetProjection(candidateProjection).SetBatchSize(batch))
	if err != nil {
		return nil, fail("claim: scan", err)
	}
	defer func() { _ = cur.Close(ctx) }()
	blocked := make(map[string]bool) // keys whose next record must wait
	var picked []candidate
	for len(picked) < limit && cur.Next(ctx) {
		var c candidate
		if err := cur.Decode(&c); err != nil {
			return nil, fail("claim: scan", err)
		}
		if c.Key != "" {
			if blocked[c.Key] {
				continue
			}
			if dead, ok := deadFrom[c.Key]; ok && dead < c.Seq {
				blocked[c.Key] = true
				continue
			}
		}
		if c.LeaseUntil.After(now) || c.AvailableAt.After(now) {
			if c.Key != "" {
				blocked[c.Key] = true
			}
			continue
		}
		picked = append(picked, c)
	}
	if err := cur.Err(); err != nil {
		return nil, fail("claim: scan", err)
	}
	return picked, nil
}

// dropBehindDead removes the picked records that follow a dead letter of
// their key.
func (s *Store) dropBehindDead(ctx context.Context, picked []candidate) ([]candidate, error) {
	var keys []string
	for _, c := range picked {
		if c.Key != "" && !slices.Contains(keys, c.Key) {
			keys = append(keys, c.Key)
		}
	}
	if len(keys) == 0 {
		return picked, nil
	}
	dead, err := s.deadKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(picked, func(c candidate) bool {
		from, ok := dead[c.Key]
		return ok && from < c.Seq
	}), nil
}

// deadKeys returns, for StrictOrder, the lowest dead sequence number of
// each key that has dead letters; of the given keys only, when there are.
func (s *Store) deadKeys(ctx context.Context, keys []string) (map[string]int64, error) {
	keyFilter := bson.D{{Key: "$ne", Value: ""}}
	if len(keys) > 0 {
		keyFilter = bson.D{{Key: "$in", Value: keys}} // keys holds no ""
	}
	filter := bson.D{inState(stateDead), {Key: fKey, Value: keyFilter}}
	cur, err := s.records.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: fKey, Value: 1}, {Key: fSeq, Value: 1}}))
	if err != nil {
		return nil, fail("claim: read dead letters", err)
	}
	var dead []struct {
		Key string `bson:"key"`
		Seq int64  `bson:"seq"`
	}
	if err := cur.All(ctx, &dead); err != nil {
		return nil, fail("claim: read dead letters", err)
	}
	from := make(map[string]int64, len(dead))
	for _, d := range dead {
		if old, ok := from[d.Key]; !ok || d.Seq < old {
			from[d.Key] = d.Seq
		}
	}
	return from, nil
}

// confirm reads back what the claim leased and returns the records whose
// order it can vouch for; it releases the rest at once.
func (s *Store) confirm(ctx context.Context, p outbox.ClaimParams, picked []candidate, token string) ([]outbox.Record, error) {
	ids := make([]string, len(picked))
	for i, c := range picked {
		ids[i] = c.ID
	}
	cur, err := s.records.Find(ctx, bson.D{idsIn(ids), {Key: fLeaseToken, Value: token}})
	if err != nil {
		return nil, fail("claim: read back", err)
	}
	var docs []recordDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fail("claim: read back", err)
	}
	mine := make(map[string]*recordDoc, len(docs))
	for i := range docs {
		if d := &docs[i]; d.LeaseOwner == p.Owner && d.State == statePending {
			mine[d.ID] = d
		}
	}
	// Keys with an older record still to go. Only a transaction can commit
	// a key's record after the scan passed its place, so only deployments
	// with transactions need the look.
	behind := make(map[string]bool)
	if s.server.transactional() {
		if behind, err = s.olderPending(ctx, picked); err != nil {
			return nil, err
		}
	}

	out := make([]outbox.Record, 0, len(mine))
	var giveBack []string
	for _, c := range picked {
		d, ok := mine[c.ID]
		switch {
		case c.Key != "" && behind[c.Key]:
			if ok {
				giveBack = append(giveBack, c.ID)
			}
		case !ok:
			// Someone else leased it between the scan and the update (only
			// after this claimer's lock expired): the key's later records
			// must wait for it.
			if c.Key != "" {
				behind[c.Key] = true
			}
		default:
			out = append(out, d.record())
		}
	}
	if len(giveBack) > 0 {
		// A failure leaves them leased to p.Owner until the lease expires:
		// late, never lost, so it does not fail the claim.
		_ = s.unclaim(ctx, token, giveBack)
	}
	return out, nil
}

// olderPending returns the picked keys that have a pending record older
// than the first one picked, in one find on the "pending_key" index.
func (s *Store) olderPending(ctx context.Context, picked []candidate) (map[string]bool, error) {
	behind := make(map[string]bool)
	seen := make(map[string]bool)
	var or bson.A
	for _, c := range picked { // in sequence order: the first of a key is its oldest
		if c.Key == "" || seen[c.Key] {
			continue
		}
		seen[c.Key] = true
		or = append(or, bson.D{inState(statePending), {Key: fKey, Value: c.Key}, {Key: fSeq, Value: bson.D{{Key: "$lt", Value: c.Seq}}}})
	}
	if len(or) == 0 {
		return behind, nil
	}
	cur, err := s.records.Find(ctx, bson.D{{Key: "$or", Value: or}}, options.Find().SetProjection(bson.D{{Key: fKey, Value: 1}}))
	if err != nil {
		return nil, fail("claim: check older records", err)
	}
	var older []struct {
		Key string `bson:"key"`
	}
	if err := cur.All(ctx, &older); err != nil {
		return nil, fail("claim: check older records", err)
	}
	for _, o := range older {
		behind[o.Key] = true
	}
	return behind, nil
}

// unclaim undoes the lease and the attempt of records claimed with token.
func (s *Store) unclaim(ctx context.Context, token string, ids []string) error {
	err := s.updateEach(ctx, ids,
		bson.D{{Key: fLeaseToken, Value: token}, inState(statePending)},
		bson.D{
			{Key: "$set", Value: notLeased()},
			{Key: "$unset", Value: bson.D{{Key: fLeaseToken, Value: ""}}},
			{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: int32(-1)}}},
		})
	return fail("claim: give back", err)
}
