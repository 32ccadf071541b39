package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// MarkDelivered implements [outbox.Store]: one updateMany. It applies
// whoever holds the lease, and to dead letters too (a late acknowledgement
// wins over the dead letter), and ignores records already delivered.
func (s *Store) MarkDelivered(ctx context.Context, p outbox.MarkDeliveredParams) error {
	if len(p.IDs) == 0 {
		return nil
	}
	ctx = withoutSession(ctx)
	now, err := s.server.now(ctx)
	if err != nil {
		return err
	}
	err = s.updateEach(ctx, p.IDs,
		bson.D{{Key: fState, Value: bson.D{{Key: "$ne", Value: stateDelivered}}}},
		bson.D{
			{Key: "$set", Value: append(notLeased(), inState(stateDelivered), bson.E{Key: fDeliveredAt, Value: now})},
			{Key: "$unset", Value: bson.D{{Key: fDeadAt, Value: ""}, {Key: fLeaseToken, Value: ""}}},
		})
	return fail("mark delivered", err)
}

// leasedTo is the filter of the pending records leased to owner whose
// lease is still running at now: other owners' outcomes and outcomes after
// the lease expired must not touch them.
func leasedTo(owner string, now time.Time) bson.D {
	return bson.D{inState(statePending), {Key: fLeaseOwner, Value: owner},
		{Key: fLeaseUntil, Value: bson.D{{Key: "$gt", Value: now}}}}
}

// ScheduleRetry implements [outbox.Store]: one unordered bulk write. The
// delay counts from the server's clock (as the store estimates it).
func (s *Store) ScheduleRetry(ctx context.Context, p outbox.ScheduleRetryParams) error {
	if len(p.Retries) == 0 {
		return nil
	}
	ctx = withoutSession(ctx)
	now, err := s.server.now(ctx)
	if err != nil {
		return err
	}
	models := make([]mongo.WriteModel, len(p.Retries))
	for i, r := range p.Retries {
		models[i] = s.updateByID(r.ID, leasedTo(p.Owner, now), bson.D{
			{Key: "$set", Value: append(notLeased(),
				bson.E{Key: fLastError, Value: r.Error}, bson.E{Key: fAvailableAt, Value: now.Add(r.Delay)})},
			{Key: "$unset", Value: bson.D{{Key: fLeaseToken, Value: ""}}},
		})
	}
	return fail("schedule retry", s.bulkWrite(ctx, models))
}

// DeadLetter implements [outbox.Store]: one unordered bulk write.
func (s *Store) DeadLetter(ctx context.Context, p outbox.DeadLetterParams) error {
	if len(p.Letters) == 0 {
		return nil
	}
	ctx = withoutSession(ctx)
	now, err := s.server.now(ctx)
	if err != nil {
		return err
	}
	models := make([]mongo.WriteModel, len(p.Letters))
	for i, f := range p.Letters {
		models[i] = s.updateByID(f.ID, leasedTo(p.Owner, now), bson.D{
			{Key: "$set", Value: append(notLeased(), inState(stateDead),
				bson.E{Key: fLastError, Value: f.Error}, bson.E{Key: fDeadAt, Value: now})},
			{Key: "$unset", Value: bson.D{{Key: fLeaseToken, Value: ""}}},
		})
	}
	return fail("dead-letter", s.bulkWrite(ctx, models))
}

// Release implements [outbox.Store]: one updateMany that ends the leases
// and takes back the attempts their claim counted. A delay counts from the
// server's clock (as the store estimates it), like a retry's.
func (s *Store) Release(ctx context.Context, p outbox.ReleaseParams) error {
	if len(p.IDs) == 0 {
		return nil
	}
	ctx = withoutSession(ctx)
	now, err := s.server.now(ctx)
	if err != nil {
		return err
	}
	set := notLeased()
	if p.Delay > 0 {
		set = append(set, bson.E{Key: fAvailableAt, Value: now.Add(p.Delay)})
	}
	err = s.updateEach(ctx, p.IDs, leasedTo(p.Owner, now), bson.D{
		{Key: "$set", Value: set},
		{Key: "$unset", Value: bson.D{{Key: fLeaseToken, Value: ""}}},
		{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: int32(-1)}}},
	})
	return fail("release", err)
}

// updateEach applies update to the records of ids that match filter: one
// updateMany on MongoDB; on FerretDB, which cannot push an $in down to its
// backend and would read every record for it, one bulk write of an update
// per _id.
func (s *Store) updateEach(ctx context.Context, ids []string, filter, update bson.D) error {
	if len(ids) == 0 {
		return nil
	}
	if !s.server.isFerret() {
		_, err := s.records.UpdateMany(ctx, append(bson.D{idsIn(ids)}, filter...), update)
		return err
	}
	models := make([]mongo.WriteModel, len(ids))
	for i, id := range ids {
		models[i] = s.updateByID(id, filter, update)
	}
	return s.bulkWrite(ctx, models)
}

// updateByID is a bulk write's update of the record id, if it matches
// filter. On MongoDB it is an updateOne (a retryable write). FerretDB 1.24
// keeps a backend connection for each updateOne of a bulk write until the
// whole command ends, and its pool (50) deadlocks when concurrent bulk
// writes hold more; a multi-document update runs its query to the end and
// gives the connection back, so FerretDB gets those. With an _id in the
// filter, both update at most one record.
func (s *Store) updateByID(id string, filter, update bson.D) mongo.WriteModel {
	filter = append(bson.D{{Key: fID, Value: id}}, filter...)
	if s.server.isFerret() {
		return mongo.NewUpdateManyModel().SetFilter(filter).SetUpdate(update)
	}
	return mongo.NewUpdateOneModel().SetFilter(filter).SetUpdate(update)
}

// bulkWrite sends models in one unordered bulk write.
func (s *Store) bulkWrite(ctx context.Context, models []mongo.WriteModel) error {
	_, err := s.records.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	return err
}
