package demo

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/txoutbox/conformance/ledger"
	outbox "github.com/txoutbox/txoutbox/core"
)

// service is the simulated application: writers that each own some users
// and, at a steady pace, update one of them and enqueue its user.updated
// event in the same transaction.
type service struct {
	store   *store
	topic   string
	keys    []string
	writers int
	rate    int
	ledger  *ledger.Ledger
	tracker *tracker
	notify  func() // tells an in-process relay about a commit
	log     *slog.Logger

	errors atomic.Int64
}

// userUpdated is the payload of a user.updated event.
type userUpdated struct {
	UserID  string `json:"user_id"`
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// run writes until ctx ends. Transactions run under base, so that the end
// of the run never cuts one in half.
func (s *service) run(ctx, base context.Context) {
	var wg sync.WaitGroup
	for w := range s.writers {
		var mine []int
		for i := w; i < len(s.keys); i += s.writers {
			mine = append(mine, i)
		}
		wg.Go(func() { s.write(ctx, base, w, mine) })
	}
	wg.Wait()
}

// write is writer w, which alone updates the users mine (indexes into
// keys), in turn, so each user's events are committed in order.
func (s *service) write(ctx, base context.Context, w int, mine []int) {
	interval := time.Duration(float64(time.Second) * float64(s.writers) / float64(s.rate))
	versions := make([]int, len(mine))
	next := time.Now().Add(interval * time.Duration(w) / time.Duration(s.writers)) // staggered
	for n := 0; ; n++ {
		if !sleep(ctx, time.Until(next)) {
			return
		}
		if time.Since(next) > time.Second {
			next = time.Now() // the store cannot keep up: go on at its pace, no burst
		}
		next = next.Add(interval)

		j := n % len(mine)
		versions[j]++
		user := s.keys[mine[j]]
		payload, _ := json.Marshal(userUpdated{UserID: user, Name: userName(mine[j], versions[j]), Version: versions[j]})
		msg := outbox.Message{ID: outbox.NewID(), Topic: s.topic, Key: user, Payload: payload}

		tctx, cancel := context.WithTimeout(base, 30*time.Second)
		err := s.store.update(tctx, user, userName(mine[j], versions[j]), msg)
		cancel()
		var ce *commitError
		switch {
		case err == nil:
			s.tracker.commit(msg.ID, time.Now())
			s.ledger.Committed(msg)
			s.notify()
		case errors.As(err, &ce):
			s.ledger.Uncertain(msg)
			s.failed(err)
		default:
			s.ledger.RolledBack(msg)
			s.failed(err)
		}
	}
}

func (s *service) failed(err error) {
	if s.errors.Add(1) <= 3 {
		s.log.Warn("outbox demo: a transaction of the service failed", slog.Any("error", err))
	}
}
