package pgstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// listenConfig tunes Listen; tests shorten it.
type listenConfig struct {
	// idle is how long Listen waits for a notification before it checks
	// that its connection still answers. A connection that a firewall or
	// NAT dropped silently would otherwise wait forever.
	idle time.Duration
	// retries is how many reconnections in a row Listen attempts before it
	// gives up and closes its channel (the relay then logs it and calls
	// Listen again after its own backoff).
	retries int
	// minBackoff and maxBackoff bound the wait between reconnections.
	minBackoff, maxBackoff time.Duration
}

var defaultListenConfig = listenConfig{
	idle:       30 * time.Second,
	retries:    5,
	minBackoff: 100 * time.Millisecond,
	maxBackoff: 5 * time.Second,
}

// Listen returns a channel that receives a value soon after a transaction
// that enqueued records commits (coalesced: one value may stand for many
// commits). It implements [outbox.Listener].
//
// It LISTENs to [Store.Channel] on a connection of its own: one taken from
// the pool (so the pool's connection settings and hooks apply) and then
// detached from it (pgxpool's Hijack), so that it never holds one of the
// pool's MaxConns slots. When that connection fails it reconnects with
// backoff, and sends a value once reconnected, since notifications sent in
// between are lost. After several failed reconnections in a row it gives
// up and closes the channel; the channel is also closed when ctx ends.
//
// Notifications are wake-ups only; the relay keeps polling. They do not
// pass through a transaction-pooling proxy such as PgBouncer in transaction
// mode: point Listen at the server, or rely on polling there.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	conn, err := s.listenConn(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan struct{}, 1)
	go s.listenLoop(ctx, conn, ch)
	return ch, nil
}

// listenConn returns a detached connection that listens to the channel.
func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, translate("listen", err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.names.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, translate("listen", err)
	}
	return conn, nil
}

func (s *Store) listenLoop(ctx context.Context, conn *pgx.Conn, ch chan struct{}) {
	defer close(ch)
	for {
		s.waitNotifications(ctx, conn, ch)
		closeConn(conn)
		conn = nil
		for attempt := 1; conn == nil; attempt++ {
			if ctx.Err() != nil || attempt > s.listen.retries {
				return
			}
			if !sleep(ctx, s.backoff(attempt)) {
				return
			}
			conn, _ = s.listenConn(ctx)
		}
		wake(ch) // records committed while reconnecting sent no notification
	}
}

// waitNotifications turns notifications into wake-ups until ctx ends or the
// connection fails.
func (s *Store) waitNotifications(ctx context.Context, conn *pgx.Conn, ch chan struct{}) {
	for {
		wctx, cancel := context.WithTimeout(ctx, s.listen.idle)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			wake(ch)
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			// Nothing for a while: make sure the server is still there.
			pctx, cancel := context.WithTimeout(ctx, s.listen.idle)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		default:
			return
		}
	}
}

// backoff is the wait before reconnection attempt n (from 1): exponential
// between minBackoff and maxBackoff, less a random part up to one half.
func (s *Store) backoff(n int) time.Duration {
	d := s.listen.minBackoff << min(n-1, 30)
	if d <= 0 || d > s.listen.maxBackoff {
		d = s.listen.maxBackoff
	}
	return d - rand.N(d/2+1)
}

// wake sends a value unless one is already waiting.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// closeConn closes a detached connection, bounded in time: it may be dead.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
