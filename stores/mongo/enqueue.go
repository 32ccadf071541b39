package mongostore

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// seqClock is the process-wide source of sequence numbers.
var seqClock microClock

// Enqueue writes msgs to the outbox inside the transaction that ctx
// carries: the context that [mongo.Session.WithTransaction] passes to its
// callback, or one made with [mongo.NewSessionContext] after
// [mongo.Session.StartTransaction]. The messages exist if and only if that
// transaction commits. Enqueue never starts, commits or aborts the
// transaction, and never creates collections or indexes (MongoDB cannot
// create indexes inside a transaction): run [Store.Migrate] first.
//
// Without a running transaction in ctx it returns an error matching
// [ErrNoTransaction], unless [Config.AllowNonTransactional] is set; the
// session must come from the client given to [New].
//
// It first validates and completes msgs in place ([outbox.Prepare]): empty
// IDs get a UUIDv7 and a zero CreatedAt becomes now, so the caller can read
// them afterwards, and an invalid message rejects the whole call before
// anything is written. CreatedAt is kept to the millisecond (BSON dates).
//
// Each record is stored with its lane, [outbox.LaneOf] its key (or, without
// a key, its ID) and the lane count that the first [Store.Migrate] fixed;
// the Store reads that count once, through its own client.
//
// # Order
//
// Each message gets a sequence number (Record.Seq). Messages with the same
// key take theirs from one counter document per key, "<Collection>.keys",
// updated inside the same transaction: of two transactions writing one key,
// the second conflicts with the first (a WriteConflict labelled
// TransientTransactionError, which WithTransaction retries once the first
// has committed or aborted), so a key's sequence numbers increase in the
// order its transactions commit, and a relay that sees a key's record has
// already been able to see all of the key's earlier ones. Sequence numbers
// are microsecond timestamps from the writer's clock, raised above the
// key's last number when needed, so across keys they roughly follow write
// time; they are not unique across keys. Messages without a key take no
// counter and are not ordered.
//
// # Round trips
//
// One findOneAndUpdate per distinct non-empty key (two in the rare case
// where the writer's clock is behind the key's last number), then one
// insertMany for all messages.
//
// Errors keep the driver error in their chain, so its labels stay visible
// to WithTransaction. A duplicate message ID fails the call (and, inside a
// transaction, aborts it on the server).
func (s *Store) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sess := mongo.SessionFromContext(ctx)
	if sess != nil && sess.Client() != s.client {
		return fmt.Errorf("mongostore: Enqueue: the session in ctx was started from another mongo.Client than the store's; start it from the client given to New: %w", ErrNoTransaction)
	}
	inTx := sess != nil && sess.TransactionRunning()
	if !inTx && !s.cfg.AllowNonTransactional {
		return fmt.Errorf("mongostore: Enqueue needs a running transaction: pass the context that session.WithTransaction gives its callback "+
			"(or mongo.NewSessionContext after StartTransaction), or set Config.AllowNonTransactional to write without atomicity: %w", ErrNoTransaction)
	}
	if err := outbox.Prepare(msgs, s.cfg.Limits); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	// Checking the schema and loading the lane count run outside the
	// transaction (listCollections is not allowed inside one), once per
	// Store.
	lanes, err := s.lanesCount(ctx)
	if err != nil {
		return err
	}
	seqs, err := s.assignSeqs(ctx, msgs, inTx)
	if err != nil {
		return err
	}
	docs := make([]any, len(msgs))
	for i, m := range msgs {
		docs[i] = newRecordDoc(m, seqs[i], lanes)
	}
	if _, err := s.records.InsertMany(ctx, docs); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("mongostore: Enqueue: a message with one of these IDs is already in the outbox: %w", err)
		}
		return fail("enqueue", err)
	}
	return nil
}

// assignSeqs returns the sequence numbers of msgs: fresh timestamps from
// seqClock, raised per key above the key's counter, which it moves to the
// key's last number.
func (s *Store) assignSeqs(ctx context.Context, msgs []outbox.Message, inTx bool) ([]int64, error) {
	base := seqClock.reserve(len(msgs), s.server.estimate())
	seqs := make([]int64, len(msgs))
	var keys []string
	positions := make(map[string][]int)
	for i, m := range msgs {
		seqs[i] = base + int64(i)
		if m.Key == "" {
			continue
		}
		if _, ok := positions[m.Key]; !ok {
			keys = append(keys, m.Key)
		}
		positions[m.Key] = append(positions[m.Key], i)
	}
	for _, key := range keys {
		pos := positions[key]
		first, last := seqs[pos[0]], seqs[pos[len(pos)-1]]
		old, err := s.bumpCounter(ctx, key, last, inTx)
		if err != nil {
			return nil, err
		}
		if old < first {
			continue // the usual case: the timestamps already follow the key's last number
		}
		prev := old
		for _, i := range pos {
			seqs[i] = max(prev+1, seqs[i])
			prev = seqs[i]
		}
		if prev > max(old, last) {
			_, err := s.keys.UpdateOne(ctx, bson.D{{Key: fID, Value: key}},
				bson.D{{Key: "$max", Value: bson.D{{Key: fSeq, Value: prev}}}})
			if err != nil {
				return nil, fail("enqueue: advance the key's sequence", err)
			}
		}
		seqClock.advance(prev)
	}
	return seqs, nil
}

// bumpCounter raises key's counter to at least last and returns its
// previous value (0 for a new key). Inside a transaction, this write is
// what makes writers of one key conflict.
func (s *Store) bumpCounter(ctx context.Context, key string, last int64, inTx bool) (int64, error) {
	opts := options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.Before)
	for attempt := 1; ; attempt++ {
		var counter struct {
			Seq int64 `bson:"seq"`
		}
		err := s.keys.FindOneAndUpdate(ctx, bson.D{{Key: fID, Value: key}},
			bson.D{{Key: "$max", Value: bson.D{{Key: fSeq, Value: last}}}}, opts).Decode(&counter)
		switch {
		case err == nil:
			return counter.Seq, nil
		case errors.Is(err, mongo.ErrNoDocuments):
			return 0, nil // the upsert created the counter
		case !inTx && attempt == 1 && mongo.IsDuplicateKeyError(err):
			continue // two upserts of a new key raced; the counter exists now
		default:
			return 0, fail("enqueue: take the key's sequence", err)
		}
	}
}

// withoutSession returns ctx without its session, so that operations run
// outside the caller's transaction.
func withoutSession(ctx context.Context) context.Context {
	if mongo.SessionFromContext(ctx) == nil {
		return ctx
	}
	return mongo.NewSessionContext(ctx, nil)
}
