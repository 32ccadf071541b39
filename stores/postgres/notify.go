package pgstore

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// notifier decides which Enqueue calls carry a NOTIFY in their transaction
// (see Config.NotifyInterval). PostgreSQL serializes the commits of all
// transactions that notify, database-wide, each holding the lock through
// its WAL flush; so within an interval only the first Enqueue notifies in
// its transaction (delivered by its commit, the earliest moment a relay can
// read the record), and the calls after it leave their wake-up to one
// notification sent from the store's pool, outside any transaction, when
// the interval ends. The writers' transactions then pay for at most one
// notifying commit per interval and per Store, however many they are.
type notifier struct {
	interval time.Duration // negative: every Enqueue notifies in its transaction
	send     func()        // one notification, outside any transaction

	mu       sync.Mutex
	last     time.Time // when the last notification was queued or sent
	trailing bool      // a notification is due at last+interval
	sending  bool      // send is running
	again    bool      // fire came while send was running: send once more
}

// sharedNotifier returns the notifier of the Stores on pool that notify
// channel with interval, making it on first use: a program that makes a
// Store per request still notifies in a transaction at most once per
// interval.
func sharedNotifier(pool *pgxpool.Pool, channel string, interval time.Duration, send func()) *notifier {
	k := notifierKey{pool, channel, interval}
	if n, ok := notifiers.Load(k); ok {
		return n.(*notifier)
	}
	n, _ := notifiers.LoadOrStore(k, &notifier{interval: interval, send: send})
	return n.(*notifier)
}

type notifierKey struct {
	pool     *pgxpool.Pool
	channel  string
	interval time.Duration
}

var notifiers sync.Map // notifierKey → *notifier

// inTx reports whether the Enqueue about to run notifies in its
// transaction. When it does not, a notification is sent at the end of the
// current interval.
func (n *notifier) inTx() bool {
	if n.interval < 0 {
		return true
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	wait := n.last.Add(n.interval).Sub(now)
	if n.last.IsZero() || wait <= 0 {
		n.last = now
		return true
	}
	if !n.trailing {
		n.trailing = true
		time.AfterFunc(wait, n.fire)
	}
	return false
}

// fire sends the notification due at the end of an interval. One send runs
// at a time: a fire that comes while one runs (the pool slow to give a
// connection) makes it send once more rather than starting another.
func (n *notifier) fire() {
	n.mu.Lock()
	n.trailing = false
	n.last = time.Now()
	if n.sending {
		n.again = true
		n.mu.Unlock()
		return
	}
	n.sending = true
	n.mu.Unlock()
	for {
		n.send()
		n.mu.Lock()
		if !n.again {
			n.sending = false
			n.mu.Unlock()
			return
		}
		n.again = false
		n.mu.Unlock()
	}
}

// trailingTimeout bounds a notification sent at the end of an interval:
// it is a wake-up only (relays poll too), so it is dropped rather than
// left waiting for a connection.
const trailingTimeout = time.Second

// notifyNow sends one notification on the store's channel from its pool,
// in a transaction of its own that does not wait for its WAL flush (a
// notification needs no durability). Errors are dropped: a lost wake-up
// delays a relay until its next poll, and the relay logs an unreachable
// store itself.
func (s *Store) notifyNow() {
	ctx, cancel := context.WithTimeout(context.Background(), trailingTimeout)
	defer cancel()
	_, _ = s.pool.Exec(ctx, s.sql.notifyNow, s.names.channel)
}
