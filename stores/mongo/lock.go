package mongostore

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The lanes lock serializes the changes to lane documents (TakeLanes, the
// renewals of SyncLanes, ReleaseLanes) on servers whose updates are not
// atomic. MongoDB does not need it: a conditional update of one document
// is atomic there, so of two relays taking a lane at one epoch exactly one
// matches. On FerretDB 1.x an update is a read followed by a blind write
// of the whole document, so both would take it at the same new epoch (the
// tests measured it), and a renewal could write back a lane that another
// relay took meanwhile. An insert into a unique index and a delete by _id
// are atomic there, and the lock is built from those alone.
//
// A lock document is {_id: <random>, name: "lanes", holder, until}; the
// unique index on name lets one exist at a time. Its holder deletes it by
// its _id when done. A lock whose until has passed (its holder died) is
// deleted by _id by whoever finds it, so that a late holder cannot delete
// its successor's lock.
const (
	lockName      = "name"
	lanesLockName = "lanes"

	// lockTTL is how long a lock lasts: lane changes stall that long when
	// a relay dies holding it.
	lockTTL = 20 * time.Second

	// lockUseFor is how long after acquiring the holder may still start
	// writing; a holder that got slower than that gives up, so that a lock
	// is never used past lockTTL.
	lockUseFor = lockTTL / 2

	// lockWait bounds how long a lane change waits for the lock before it
	// fails with errLockBusy.
	lockWait = 5 * time.Second
)

type lanesLock struct {
	coll   *mongo.Collection
	server *server
}

// heldLock is an acquired lock.
type heldLock struct {
	lock     *lanesLock
	id       string
	acquired time.Time // local, with a monotonic reading
}

// acquire takes the lock for holder, waiting up to lockWait. It returns
// nil and no error when the lock stayed busy.
func (l *lanesLock) acquire(ctx context.Context, holder string) (*heldLock, error) {
	deadline := time.Now().Add(lockWait)
	backoff := time.Millisecond
	for {
		now, err := l.server.now(ctx)
		if err != nil {
			return nil, err
		}
		h := &heldLock{lock: l, id: newToken(), acquired: time.Now()}
		_, err = l.coll.InsertOne(ctx, bson.D{
			{Key: fID, Value: h.id},
			{Key: lockName, Value: lanesLockName},
			{Key: "holder", Value: holder},
			{Key: "until", Value: now.Add(lockTTL)},
		})
		if err == nil {
			return h, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return nil, fail("take the lanes lock", err)
		}
		// Busy. Wait until it is released or expires, looking rather than
		// inserting: a failed insert is logged as an error by FerretDB and
		// by PostgreSQL under it.
		for {
			if time.Now().After(deadline) {
				return nil, nil
			}
			if err := sleep(ctx, backoff+rand.N(backoff)); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, 20*time.Millisecond)
			free, err := l.freeOrExpired(ctx)
			if err != nil {
				return nil, err
			}
			if free {
				break
			}
		}
	}
}

// freeOrExpired reports whether the lock can be taken now, deleting an
// expired one.
func (l *lanesLock) freeOrExpired(ctx context.Context) (bool, error) {
	var cur struct {
		ID    string    `bson:"_id"`
		Until time.Time `bson:"until"`
	}
	err := l.coll.FindOne(ctx, bson.D{{Key: lockName, Value: lanesLockName}}).Decode(&cur)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return true, nil
	}
	if err != nil {
		return false, fail("look at the lanes lock", err)
	}
	now, err := l.server.now(ctx)
	if err != nil {
		return false, err
	}
	if cur.Until.After(now) {
		return false, nil
	}
	if _, err := l.coll.DeleteOne(ctx, bson.D{{Key: fID, Value: cur.ID}}); err != nil {
		return false, fail("delete an expired lanes lock", err)
	}
	return true, nil
}

// usable reports whether the holder may still write under the lock.
func (h *heldLock) usable() bool { return time.Since(h.acquired) < lockUseFor }

// release deletes the lock. It runs even when ctx has ended; if it fails,
// the lock expires after lockTTL.
func (h *heldLock) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = h.lock.coll.DeleteOne(ctx, bson.D{{Key: fID, Value: h.id}})
}

// newToken returns 128 random bits in hex.
func newToken() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}
