package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Settle implements [outbox.Store]. Every outcome applies only to a
// pending record of a lane that is at the epoch p.Lanes gives for it:
//
//   - With transactions (a replica set, a sharded cluster), one
//     transaction increments a counter of the lane documents at those
//     epochs (an updateMany), reads which ones it wrote, and updates the
//     records of those lanes. Writing the lane documents makes the check
//     conflict with TakeLanes: of a settle and a takeover of one lane, one
//     commits first and the other sees its result or retries
//     (WriteConflict, which WithTransaction retries).
//   - Without transactions (FerretDB, a standalone mongod), a find reads
//     the epochs, then the updates are restricted to the lanes found at
//     theirs. A takeover that lands between the two can let this late
//     settle still delete (or mark delivered) a record that the new owner
//     publishes again (a duplicate, which at-least-once allows), or set a
//     retry delay or a dead letter for it.
//
// Delivered records take one deleteMany, or with p.Retain one updateMany
// that marks them delivered for Cleanup (on FerretDB a bulk write of one
// delete or update per record); retries and dead letters one unordered
// bulk write.
// Times count from the server's clock as the store estimates it.
func (s *Store) Settle(ctx context.Context, p outbox.SettleParams) error {
	if len(p.Lanes) == 0 || len(p.Delivered)+len(p.Retries)+len(p.Dead) == 0 {
		return nil
	}
	ctx = withoutSession(ctx)
	if err := s.ready(ctx); err != nil {
		return err
	}
	now, err := s.server.now(ctx)
	if err != nil {
		return err
	}
	if s.server.transactional() && !s.server.isFerret() {
		return s.inTransaction(ctx, func(ctx context.Context) error {
			_, err := s.lanes.UpdateMany(ctx, atEpochs(p.Lanes), bson.D{{Key: "$inc", Value: bson.D{{Key: fSettles, Value: int64(1)}}}})
			if err != nil {
				return fail("settle: fence the lanes", err)
			}
			return s.settleAt(ctx, p, now)
		})
	}
	return s.settleAt(ctx, p, now)
}

// settleAt applies p's outcomes to the records of the lanes of p.Lanes
// found at their epoch.
func (s *Store) settleAt(ctx context.Context, p outbox.SettleParams, now time.Time) error {
	cur, err := s.lanes.Find(ctx, atEpochs(p.Lanes), options.Find().SetProjection(bson.D{{Key: fID, Value: 1}}))
	if err != nil {
		return fail("settle: read the lanes", err)
	}
	var found []struct {
		ID int `bson:"_id"`
	}
	if err := cur.All(ctx, &found); err != nil {
		return fail("settle: read the lanes", err)
	}
	if len(found) == 0 {
		return nil
	}
	lanes := make([]int, len(found))
	for i, l := range found {
		lanes[i] = l.ID
	}
	fenced := bson.D{inState(statePending), {Key: fLane, Value: bson.D{{Key: "$in", Value: lanes}}}}
	if len(p.Delivered) > 0 && !p.Retain {
		if err := s.deleteEach(ctx, p.Delivered, fenced); err != nil {
			return fail("settle: delete delivered", err)
		}
	}
	if len(p.Delivered) > 0 && p.Retain {
		err := s.updateEach(ctx, p.Delivered, fenced, bson.D{
			{Key: "$set", Value: bson.D{inState(stateDelivered), {Key: fDeliveredAt, Value: now}}},
			{Key: "$unset", Value: bson.D{{Key: fNotBefore, Value: ""}}},
		})
		if err != nil {
			return fail("settle: mark delivered", err)
		}
	}
	var models []mongo.WriteModel
	for _, r := range p.Retries {
		models = append(models, s.updateByID(r.ID, fenced, bson.D{
			{Key: "$set", Value: bson.D{{Key: fLastError, Value: r.Error}, {Key: fNotBefore, Value: now.Add(r.Delay)}}},
			{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: int32(1)}}},
		}))
	}
	for _, f := range p.Dead {
		models = append(models, s.updateByID(f.ID, fenced, bson.D{
			{Key: "$set", Value: bson.D{inState(stateDead), {Key: fLastError, Value: f.Error}, {Key: fDeadAt, Value: now}}},
			{Key: "$unset", Value: bson.D{{Key: fNotBefore, Value: ""}}},
			{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: int32(1)}}},
		}))
	}
	if len(models) > 0 {
		if err := s.bulkWrite(ctx, models); err != nil {
			return fail("settle: record failures", err)
		}
	}
	return nil
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

// deleteEach deletes the records of ids that match filter: one deleteMany
// on MongoDB; on FerretDB, for the reason given at updateEach, one bulk
// write of a delete per _id (a multi-document delete, like updateByID's
// update, which matches one record at most).
func (s *Store) deleteEach(ctx context.Context, ids []string, filter bson.D) error {
	if len(ids) == 0 {
		return nil
	}
	if !s.server.isFerret() {
		_, err := s.records.DeleteMany(ctx, append(bson.D{idsIn(ids)}, filter...))
		return err
	}
	models := make([]mongo.WriteModel, len(ids))
	for i, id := range ids {
		models[i] = mongo.NewDeleteManyModel().SetFilter(append(bson.D{{Key: fID, Value: id}}, filter...))
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
