package sqlitestore

import (
	"context"
	"database/sql"
)

// Listen implements [outbox.Listener]. The channel receives a value soon
// after a transaction that inserted into the outbox table commits through a
// database opened by [Open] or [OpenDSN] in this process, whichever *sql.DB
// or Store it went through. Commits made by other processes, or through a
// database opened with sql.Open directly, wake no one: the relay finds them
// by polling, or a writer in the same process calls [outbox.Relay.Notify]
// after its commit.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	hub, err := s.hub(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan struct{})
	if hub == nil { // a database without a file: no other connection writes to it
		go func() {
			<-ctx.Done()
			close(out)
		}()
		return out, nil
	}
	l := &listener{table: s.table, wake: make(chan struct{}, 1)}
	hub.add(l)
	go func() {
		defer close(out)
		defer hub.remove(l)
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.wake:
			}
			select {
			case out <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// hub returns the hub of the store's database file, or nil for a database
// without a file.
func (s *Store) hub(ctx context.Context) (*fileHub, error) {
	s.hubMu.Lock()
	defer s.hubMu.Unlock()
	if s.hubKnown {
		return s.fileHub, nil
	}
	var file sql.NullString
	err := s.db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file)
	if err != nil {
		return nil, translate("reading the database file name", err)
	}
	if file.String != "" {
		s.fileHub = hubFor(file.String)
	}
	s.hubKnown = true
	return s.fileHub, nil
}
