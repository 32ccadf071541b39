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
	fLane        = "lane"         // int32, outbox.LaneOf(key, _id, lane count)
	fNotBefore   = "not_before"   // date, while a retry waits; absent when due
	fAttempts    = "attempts"     // int32, failed attempts and takeover charges
	fLastError   = "last_error"   // string, absent until a failure
)

// A record is pending (waiting to be published, or waiting for a retry),
// dead, or delivered. Each index holds the records of one state only (a
// partial index on the state), so reading the backlog costs what the
// backlog holds, however many delivered records the collection keeps; and
// the state is a plain equality, which FerretDB pushes down to its backend.
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
	Lane        int32      `bson:"lane"`
	NotBefore   *time.Time `bson:"not_before,omitempty"`
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
func newRecordDoc(m outbox.Message, seq int64, lanes int) recordDoc {
	payload := m.Payload
	if payload == nil {
		payload = []byte{}
	}
	return recordDoc{
		ID:        m.ID,
		Seq:       seq,
		Topic:     m.Topic,
		Key:       m.Key,
		Payload:   payload,
		Headers:   headersOf(m.Headers),
		CreatedAt: m.CreatedAt,
		State:     statePending,
		Lane:      int32(outbox.LaneOf(m.Key, m.ID, lanes)),
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
	r := outbox.Record{
		Message: outbox.Message{
			ID:        d.ID,
			Topic:     d.Topic,
			Key:       d.Key,
			Payload:   d.Payload,
			Headers:   headers,
			CreatedAt: d.CreatedAt.UTC(),
		},
		Seq:       d.Seq,
		Lane:      int(d.Lane),
		Attempts:  int(d.Attempts),
		LastError: d.LastError,
	}
	if d.NotBefore != nil {
		r.NotBefore = d.NotBefore.UTC()
	}
	return r
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
