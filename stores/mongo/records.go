package mongostore

import (
	"maps"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Field names of a record document.
const (
	fID          = "_id"          // the message ID (UUID text), unique
	fSeq         = "seq"          // int64, see Enqueue
	fTopic       = "topic"        // string
	fKey         = "key"          // string, "" for unordered messages
	fPayload     = "payload"      // binary
	fHeaders     = "headers"      // array of {n: name, v: value}, absent when empty
	fCreatedAt   = "created_at"   // date
	fState       = "state"        // statePending, stateDead or stateDelivered
	fDeadAt      = "dead_at"      // date, while dead
	fDeliveredAt = "delivered_at" // date, once delivered
	fLeaseOwner  = "lease_owner"  // relay owner, "" when not leased
	fLeaseUntil  = "lease_until"  // date; epoch when not leased
	fLeaseToken  = "lease_token"  // random per claim, while leased
	fAvailableAt = "available_at" // date; epoch, or when a retry is due
	fAttempts    = "attempts"     // int32, claims counted
	fLastError   = "last_error"   // string, absent until a failure
)

// A record is pending (waiting, leased or waiting for a retry), dead, or
// delivered. Each index holds the records of one state only (a partial
// index on the state), so the claim's cost follows the backlog, however
// many delivered records the collection keeps; and the state is a plain
// equality, which FerretDB pushes down to its backend.
const (
	statePending   = "pending"
	stateDead      = "dead"
	stateDelivered = "delivered"
)

// recordDoc is a record document as stored.
type recordDoc struct {
	ID          string     `bson:"_id"`
	Seq         int64      `bson:"seq"`
	Topic       string     `bson:"topic"`
	Key         string     `bson:"key"`
	Payload     []byte     `bson:"payload"`
	Headers     []header   `bson:"headers,omitempty"`
	CreatedAt   time.Time  `bson:"created_at"`
	State       string     `bson:"state"`
	DeadAt      *time.Time `bson:"dead_at,omitempty"`
	DeliveredAt *time.Time `bson:"delivered_at,omitempty"`
	LeaseOwner  string     `bson:"lease_owner"`
	LeaseUntil  time.Time  `bson:"lease_until"`
	LeaseToken  string     `bson:"lease_token,omitempty"`
	AvailableAt time.Time  `bson:"available_at"`
	Attempts    int32      `bson:"attempts"`
	LastError   string     `bson:"last_error,omitempty"`
}

// header is one message header. Headers are stored as an array of pairs,
// not as a document: header names may hold '.' and '$', which servers
// before MongoDB 5.0 (and FerretDB) refuse in field names.
type header struct {
	Name  string `bson:"n"`
	Value string `bson:"v"`
}

// newRecordDoc is the document Enqueue inserts for m.
func newRecordDoc(m outbox.Message, seq int64) recordDoc {
	payload := m.Payload
	if payload == nil {
		payload = []byte{}
	}
	return recordDoc{
		ID:          m.ID,
		Seq:         seq,
		Topic:       m.Topic,
		Key:         m.Key,
		Payload:     payload,
		Headers:     headersOf(m.Headers),
		CreatedAt:   m.CreatedAt,
		State:       statePending,
		LeaseUntil:  epoch,
		AvailableAt: epoch,
	}
}

// record converts a stored document to what the relay sees.
func (d *recordDoc) record() outbox.Record {
	var headers map[string]string
	if len(d.Headers) > 0 {
		headers = make(map[string]string, len(d.Headers))
		for _, h := range d.Headers {
			headers[h.Name] = h.Value
		}
	}
	return outbox.Record{
		Message: outbox.Message{
			ID:        d.ID,
			Topic:     d.Topic,
			Key:       d.Key,
			Payload:   d.Payload,
			Headers:   headers,
			CreatedAt: d.CreatedAt.UTC(),
		},
		Seq:       d.Seq,
		Attempts:  int(d.Attempts),
		LastError: d.LastError,
	}
}

// headersOf returns m's headers as stored, sorted by name.
func headersOf(m map[string]string) []header {
	if len(m) == 0 {
		return nil
	}
	hs := make([]header, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		hs = append(hs, header{Name: name, Value: m[name]})
	}
	return hs
}

// inState is the filter of the records in state.
func inState(state string) bson.E { return bson.E{Key: fState, Value: state} }

// idsIn is the filter {_id: {$in: ids}}.
func idsIn(ids []string) bson.E {
	return bson.E{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}}
}

// notLeased is the $set that ends a lease.
func notLeased() bson.D {
	return bson.D{{Key: fLeaseOwner, Value: ""}, {Key: fLeaseUntil, Value: epoch}}
}
