package bench

import (
	"context"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// memStore is the in-memory reference store: no database, no business
// table, no simple relay. It shows what the relay and the broker cost with
// a store that costs almost nothing, and lets a smoke run go without
// servers.
type memStore struct{}

func newMemoryStore() *memStore { return &memStore{} }

func (memStore) info(context.Context) Component {
	return Component{Spec: "memory", Kind: "memory", Server: "core/memory (in-process reference store)",
		Client: "core " + moduleVersion("github.com/txoutbox/txoutbox/core")}
}

func (memStore) close() error { return nil }

func (memStore) rawTable(context.Context) (rawTable, error) {
	return nil, unsupported("the memory store has no table")
}

func (memStore) newOutbox(context.Context, string, int) (outboxTarget, error) {
	return &memOutbox{store: memory.NewStore(memory.StoreConfig{})}, nil
}

type memOutbox struct{ store *memory.Store }

func (o *memOutbox) relayStore(context.Context) (outbox.Store, func(), error) {
	return o.store, func() {}, nil
}

func (o *memOutbox) business(ctx context.Context, msgs []outbox.Message, _ Notify) error {
	tx := o.store.Begin()
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if len(msgs) > 0 {
		if err := o.store.Enqueue(ctx, tx, msgs...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (o *memOutbox) enqueue(ctx context.Context, msgs []outbox.Message) error {
	return o.business(ctx, msgs, NotifyNone)
}

func (o *memOutbox) retain(context.Context, int, int) error {
	return unsupported("the memory store has no table to grow")
}

func (o *memOutbox) settle(context.Context) error { return nil }

func (o *memOutbox) simple() (simpleOutbox, error) {
	return nil, unsupported("the memory store has no SQL for a simple relay")
}

func (o *memOutbox) drop(context.Context) error { return nil }
