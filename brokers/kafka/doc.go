// Package kafkapub publishes outbox messages to Kafka with franz-go.
//
// A [Publisher] implements [outbox.Publisher] for the relay of
// github.com/txoutbox/txoutbox/core. Build it from connection settings with
// [Dial], or over a *kgo.Client of your own with [New]:
//
//	pub, err := kafkapub.Dial(kafkapub.DialConfig{Brokers: []string{"localhost:9092"}})
//	if err != nil { ... }
//	defer pub.Close()
//	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{})
//
// [ParseURL] turns a URL such as
// kafka://host1:9092,host2:9092?tls=true&sasl=scram-sha-512&user=relay&password=...
// into a [DialConfig].
//
// # Records
//
// Each message becomes one record: the topic is the message's Topic (or
// what [Config.Topic] maps it to), the key is the message's Key (no key
// when it is empty, so such records spread over partitions), the value is
// the payload (a null value when the payload is empty: a tombstone on a
// compacted topic), and the headers are the message's headers, sorted by
// name, after an [IDHeader] ("outbox-id") header with the message ID. Trace
// context travels as the message's own headers (traceparent, tracestate).
// The record timestamp is the time it was produced. With
// [Config.CloudEvents] on, the records also carry the ce_ headers of the
// CloudEvents Kafka binding (binary mode).
//
// # Guarantees
//
// Publish reports nil for a message only once every in-sync replica has
// it (acks=all); the client is an idempotent producer, so kgo's own
// retries never write a record twice. A message published again by the
// relay (after a crash or a lost acknowledgement) is a new record with the
// same outbox-id header: consumers drop duplicates by that ID.
//
// Records of one key go to one partition (kgo's default partitioner hashes
// the key like the Java client), so consumers see a key's messages in
// order. The publisher never creates topics. Publish never lets a later message of a key reach the broker once
// an earlier one failed in the same call: it produces a key's messages one
// at a time, each after the acknowledgement of the previous, and gives the
// ones after a failure [outbox.ErrNotAttempted]. Messages of different keys
// are produced together.
//
// # Errors
//
// Results are classified for the relay: a record too large on its own for
// the topic or the client's batch limit (MESSAGE_TOO_LARGE) and other
// refusals of the record itself are [outbox.Permanent] and dead-lettered at
// once (a record refused only because its batch was too large is produced
// again alone, within the same call); a
// missing topic matches [ErrUnknownTopic] and is retried, then
// dead-lettered; a topic whose partitions cannot take records now while
// the brokers answer (too few in-sync replicas for min.insync.replicas, no
// leader: NOT_ENOUGH_REPLICAS, LEADER_NOT_AVAILABLE and the other errors
// Kafka marks retriable, or a record timeout while a ping of the brokers
// succeeds) matches [outbox.ErrTopicUnavailable], so the relay holds back
// that topic, without counting attempts, and goes on with the others; a
// cluster that cannot be reached or refuses the credentials or TLS matches
// [outbox.ErrUnavailable], so the relay hands the batch back without
// counting attempts and pauses. Every error names the topic and carries
// the broker's reason.
package kafkapub
