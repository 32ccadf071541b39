package sqlitestore

import (
	"context"
	"strings"
	"sync"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// A fileHub is what the connections and stores of one database file in this
// process share: an in-process queue for SQLite's write lock, and the
// listeners waiting for new records.
//
// The queue is there because SQLite's own wait for the write lock is a
// sleep-and-retry loop with growing sleeps: under load the connection that
// waited longest sleeps longest and a newcomer takes the lock, so a writer
// can wait past its busy timeout while others go ahead. Queueing in Go first
// hands the lock over in arrival order without sleeps; SQLite's busy wait is
// then only for writers of other processes.
type fileHub struct {
	lock chan struct{} // holds a value while a write transaction of this process runs

	mu        sync.Mutex
	listeners map[*listener]struct{}
}

// listener is one Listen call: the table it watches and its wake channel,
// with room for one pending wake-up.
type listener struct {
	table string
	wake  chan struct{}
}

// hubs maps a database file, as SQLite names it, to its hub. Entries stay
// for the life of the process: one small struct per file opened.
var hubs sync.Map // string -> *fileHub

func hubFor(file string) *fileHub {
	if h, ok := hubs.Load(file); ok {
		return h.(*fileHub)
	}
	h, _ := hubs.LoadOrStore(file, &fileHub{
		lock:      make(chan struct{}, 1),
		listeners: make(map[*listener]struct{}),
	})
	return h.(*fileHub)
}

// ErrBusy is returned when a write transaction waited for another write
// transaction of this process longer than the busy timeout (BeginTx on a
// database from [Open]) or Config.LockTimeout (the store's own). It matches
// [outbox.ErrUnavailable]. SQLITE_BUSY from the driver, when a connection
// of another process holds the lock, is translated the same way by the
// store.
var ErrBusy error = busyError{}

type busyError struct{}

func (busyError) Error() string {
	return "sqlitestore: database is locked: another write transaction held the write lock past the timeout"
}
func (busyError) Is(target error) bool { return target == outbox.ErrUnavailable }

// acquire waits for the write lock queue until ctx ends or timeout passes.
func (h *fileHub) acquire(ctx context.Context, timeout time.Duration) error {
	select {
	case h.lock <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case h.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrBusy
	}
}

func (h *fileHub) release() { <-h.lock }

func (h *fileHub) add(l *listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.listeners[l] = struct{}{}
}

func (h *fileHub) remove(l *listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.listeners, l)
}

// committed wakes the listeners of tables; it never blocks.
func (h *fileHub) committed(tables []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		for _, t := range tables {
			if strings.EqualFold(t, l.table) { // SQLite table names ignore case
				select {
				case l.wake <- struct{}{}:
				default: // a wake-up is already pending
				}
				break
			}
		}
	}
}
