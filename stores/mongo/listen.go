package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	outbox "github.com/txoutbox/txoutbox/core"
)

// changes selects the events that make records readable: inserts
// (committed transactions) and replays of dead letters (state set to
// pending). Events carry nothing but their resume token.
var changes = mongo.Pipeline{
	{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "operationType", Value: "insert"}},
		bson.D{{Key: "operationType", Value: "update"}, {Key: "updateDescription.updatedFields." + fState, Value: statePending}},
	}}}}},
	{{Key: "$project", Value: bson.D{{Key: "operationType", Value: 1}}}},
}

// maxListenFailures is how many reconnections in a row Listen tries before
// it closes its channel (the relay then calls Listen again after a backoff).
const maxListenFailures = 5

// Listen implements [outbox.Listener] with a change stream on the outbox
// collection: the channel receives a value soon after a transaction that
// enqueued records commits, or dead letters are replayed. It needs a
// replica set or a sharded cluster; elsewhere (a standalone mongod,
// FerretDB) it returns an error matching [outbox.ErrUnsupported] and the
// relay polls.
//
// The stream resumes from its last resume token after an error (the
// driver also resumes on its own after transient ones). When the oplog no
// longer holds that point (ChangeStreamHistoryLost), it starts a new
// stream from now and sends one wake-up, so that the relay rescans for
// whatever it may have missed. The channel is closed when ctx ends, or
// after maxListenFailures failed reconnections in a row.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	ctx = withoutSession(ctx)
	cs, err := s.watch(ctx, nil)
	if err != nil {
		if noChangeStreams(err) {
			return nil, fmt.Errorf("mongostore: Listen: change streams need a replica set or a sharded cluster, which this deployment is not (relays poll instead): %w: %w",
				outbox.ErrUnsupported, err)
		}
		return nil, fail("listen", err)
	}
	ch := make(chan struct{}, 1)
	go s.follow(ctx, cs, ch)
	return ch, nil
}

func (s *Store) watch(ctx context.Context, resumeAfter bson.Raw) (*mongo.ChangeStream, error) {
	opts := options.ChangeStream()
	if resumeAfter != nil {
		opts.SetResumeAfter(resumeAfter)
	}
	return s.records.Watch(ctx, changes, opts)
}

// follow turns the change stream into wake-ups on ch until ctx ends.
func (s *Store) follow(ctx context.Context, cs *mongo.ChangeStream, ch chan<- struct{}) {
	defer close(ch)
	wake := func() {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	var token bson.Raw
	for {
		for cs.Next(ctx) {
			token = cs.ResumeToken()
			wake()
		}
		err := cs.Err()
		if t := cs.ResumeToken(); t != nil {
			token = t
		}
		closeStream(ctx, cs)
		if ctx.Err() != nil {
			return
		}
		for fails := 1; ; fails++ {
			if historyLost(err) {
				token = nil // start from now, and rescan once
				wake()
			}
			if fails > maxListenFailures || sleep(ctx, time.Duration(fails)*200*time.Millisecond) != nil {
				return
			}
			if cs, err = s.watch(ctx, token); err == nil {
				wake() // something may have committed while reconnecting
				break
			}
		}
	}
}

func closeStream(ctx context.Context, cs *mongo.ChangeStream) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = cs.Close(ctx)
}

// historyLost reports whether a change stream cannot resume from its token
// because the oplog has moved past it.
func historyLost(err error) bool {
	return err != nil && hasCode(err, codeChangeStreamHistory, codeChangeStreamFatal)
}

// noChangeStreams reports whether the deployment has no change streams.
func noChangeStreams(err error) bool {
	return hasCode(err, codeReplicaSetsOnly, codeNotImplemented, codeCommandNotSupported)
}
