package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
	outbox "github.com/txoutbox/txoutbox/core"
)

type loadMode int

const (
	loadCommit  loadMode = iota // every transaction commits
	loadFailing                 // many transactions panic, are cancelled or roll back after enqueueing
)

// txEnd is how a writer's transaction ends.
type txEnd int

const (
	commit txEnd = iota
	rollback
	panicking
	cancelled
)

var errPanicked = errors.New("the transaction panicked")

// write runs the writers until they have committed o.Events messages. Each
// key belongs to one writer, which writes it in order, so the ledger knows
// every key's commit order.
func (s *session) write(mode loadMode) {
	o := s.o
	per := max(1, o.Events/o.Writers)
	keysPer := max(1, o.Keys/o.Writers)
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.Writers) / float64(o.Rate))
	}
	var wg sync.WaitGroup
	for w := range o.Writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			start := time.Now()
			for committed, n := 0, 0; committed < per && s.ctx.Err() == nil; n++ {
				if interval > 0 {
					if d := time.Until(start.Add(time.Duration(committed) * interval)); d > 0 {
						select {
						case <-time.After(d):
						case <-s.ctx.Done():
							return
						}
					}
				}
				key := fmt.Sprintf("w%d-k%d", w, rng.IntN(keysPer))
				msgs := make([]outbox.Message, 1+rng.IntN(3))
				for i := range msgs {
					msgs[i] = outbox.Message{Topic: s.tg.Topic, Key: key, Payload: fmt.Appendf(nil, "%s #%d.%d", key, n, i)}
				}
				end := commit
				if mode == loadFailing {
					end = []txEnd{commit, commit, rollback, panicking, cancelled}[rng.IntN(5)]
				}
				err := writeTx(s.ctx, s.tg.Outbox, msgs, end)
				if err != nil && (msgs[0].ID == "" || end == commit) {
					// The database is down or restarting: do not spin.
					select {
					case <-time.After(10 * time.Millisecond):
					case <-s.ctx.Done():
					}
				}
				switch {
				case msgs[0].ID == "":
					// Begin failed (a killed connection): nothing was written.
				case end == commit && err == nil:
					s.ledger.Committed(msgs...)
					committed += len(msgs)
				case end == commit && errors.Is(err, errCommit):
					s.ledger.Uncertain(msgs...) // the commit may or may not have happened
				case end == cancelled && err == nil:
					s.ledger.Committed(msgs...) // the driver committed before noticing the cancel
					committed += len(msgs)
				default:
					s.ledger.RolledBack(msgs...)
				}
			}
		})
	}
	wg.Wait()
}

var errCommit = errors.New("commit failed")

// writeTx writes msgs in one transaction that ends as asked. For commit, a
// failed Commit is reported wrapping errCommit.
func writeTx(ctx context.Context, ob conformance.Outbox, msgs []outbox.Message, end txEnd) (err error) {
	txCtx := ctx
	if end == cancelled {
		var cancel context.CancelFunc
		txCtx, cancel = context.WithCancel(ctx)
		defer cancel()
		tx, err := ob.Begin(txCtx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if err := tx.Enqueue(txCtx, msgs...); err != nil {
			return err
		}
		cancel() // the request was cancelled after the enqueue
		return tx.Commit(txCtx)
	}
	tx, err := ob.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		_ = tx.Rollback(ctx) // the usual idiom; a no-op after Commit
		if p := recover(); p != nil {
			err = errPanicked
		}
	}()
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		return err
	}
	switch end {
	case rollback:
		return tx.Rollback(ctx)
	case panicking:
		panic("business logic failed after enqueue")
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%w: %w", errCommit, err)
	}
	return nil
}
