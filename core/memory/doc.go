// Package memory is the in-memory reference implementation of an outbox
// [outbox.Store] and a broker [outbox.Publisher].
//
// It is the executable specification of txoutbox's contracts: it passes
// every conformance suite, and its code favours being obviously right over
// being fast. Use it in tests and examples, and as a model when writing an
// adapter; it keeps nothing across restarts, so it is not for production.
//
//	store := memory.NewStore(memory.StoreConfig{})
//	pub := memory.NewPublisher(memory.PublisherConfig{})
//	tx := store.Begin()
//	_ = store.Enqueue(ctx, tx, outbox.Message{Topic: "user.updated", Key: "42", Payload: body})
//	_ = tx.Commit()
//	relay, _ := outbox.NewRelay(store, pub, outbox.RelayConfig{})
package memory
