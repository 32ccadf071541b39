// Package natspub publishes txoutbox messages to NATS JetStream. Its
// [Publisher] implements [outbox.Publisher]: a relay hands it the committed
// messages of an outbox and records a message as delivered only once its
// stream has acknowledged it.
//
// Build a Publisher over a JetStream context you own, or let [Connect] open
// (and [Publisher.Close] close) the connection:
//
//	js, _ := jetstream.New(nc)
//	pub, err := natspub.New(js, natspub.Config{})
//
//	pub, err := natspub.Connect(ctx, natspub.Connection{URL: "nats://127.0.0.1:4222", CredsFile: "relay.creds"}, natspub.Config{})
//	defer pub.Close()
//
//	relay, err := outbox.NewRelay(store, pub, outbox.RelayConfig{})
//
// [ParseURL] reads the nats://host:4222?creds=...&create_streams=true URLs
// of the outbox command into a [Connection] and a [Config].
//
// # What a message becomes
//
// The subject is the message's Topic, or what [Config.Subject] maps it to
// (see [SubjectPrefix], and [SubjectTemplate] to put the key in the
// subject). The payload is the body. The message's headers are
// carried as they are, and two are added: Nats-Msg-Id ([HeaderMsgID]) holds
// the message ID, and Outbox-Key ([HeaderKey]) the key when there is one.
// User headers cannot replace them or any other Nats- header: names starting
// with "Nats-" or "Outbox-" are refused (core's Enqueue refuses them first).
// With [Config.CloudEvents] on, messages also carry the ce- headers of the
// CloudEvents NATS binding (binary mode).
//
// # Streams and the duplicate window
//
// Every subject must be captured by a JetStream stream. A message whose
// subject no stream captures fails with [ErrNoStream], an error naming the
// subject; the relay retries it with backoff and dead-letters it after
// MaxAttempts. Set [Config.CreateStreams] to have the publisher create the
// stream instead ([DefaultStreamFor] describes the one it creates, or
// supply [Config.StreamFor]).
//
// At-least-once delivery republishes a message whose acknowledgement was
// lost (a relay crash, a timeout, a connection lost mid-batch). JetStream
// drops the copy when its Nats-Msg-Id was stored within the stream's
// duplicate window (StreamConfig.Duplicates, 2 minutes unless set). Make
// the window longer than the time between a lost acknowledgement and the
// republish:
//
//   - a relay crash: the record is published again once its lease expires,
//     so at least RelayConfig.Lease + PublishTimeout (75s by default);
//   - a broker outage: the records are published again when it ends, so
//     the longest outage you want deduplicated;
//   - a timed-out acknowledgement: the record is retried after its backoff,
//     up to RelayConfig.MaxRetryDelay (5m by default).
//
// 10 minutes ([DefaultDuplicateWindow]) covers the relay's defaults. The
// server keeps the IDs of the window in memory, roughly 100 bytes per
// message: at 10,000 messages a second, a 10-minute window holds 6 million
// IDs, about 600 MB. Copies outside the window are stored twice; consumers
// that must see each message once deduplicate on Nats-Msg-Id as well.
//
// # Throughput and per-key order
//
// Publish sends asynchronously, keeping up to [Config.MaxInFlight] messages
// unacknowledged, and waits for every acknowledgement. Messages of one key
// are never in flight together: the next message of a key leaves when the
// previous one is acknowledged, so a failure stops its key (the later
// messages of the key get [outbox.ErrNotAttempted]) while other keys go on.
// Pipelining within a key would let JetStream store message 3 after
// refusing message 2 (its subject has no stream, a stream limit, a lost
// connection), which breaks per-key order. Batches of many keys therefore
// run at the speed of raw async publishing; a batch of a single key runs
// at one round trip per message.
//
// # Errors
//
// Results match [outbox.ErrUnavailable] when the connection is down or
// closed (the relay then pauses and retries without counting attempts, and
// Publish stops sending at the first such failure),
// [outbox.ErrTopicUnavailable] when the subject's stream does not answer
// while the connection is up (no leader: the relay holds back that subject
// alone, without counting attempts), [ErrNoStream] for a subject without a
// stream, and [outbox.ErrPermanent] (dead-lettered at
// once) for a message larger than the server's max_payload (payload and
// headers together) or its stream's max_msg_size, and for a subject that
// is not a literal NATS subject. An acknowledgement that does not come
// within [Config.AckTimeout] while the connection is up is a plain error:
// the relay retries the message, and the stream drops the copy if the
// first one was stored.
package natspub
