package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Stats reports the backlog, the dead letters and the relays holding
// leases, in one round trip. It reads every undelivered record (through the
// partial indexes, never the delivered ones), so its cost grows with the
// backlog, not with the retained history. It implements
// [outbox.StatsReader].
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	b := &pgx.Batch{}
	b.Queue(s.sql.stats)
	b.Queue(s.sql.statsRelays)
	br := s.pool.SendBatch(ctx, b)
	err := func() error {
		var oldest *time.Time
		if err := br.QueryRow().Scan(&st.Pending, &st.Leased, &st.Retrying, &st.Replayed, &st.Dead, &oldest); err != nil {
			return err
		}
		if oldest != nil {
			st.OldestPending = oldest.UTC()
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		st.Relays, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.RelayLeases, error) {
			var rl outbox.RelayLeases
			err := row.Scan(&rl.Owner, &rl.Leased, &rl.Until)
			rl.Until = rl.Until.UTC()
			return rl, err
		})
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return outbox.Stats{}, translate("stats", err)
	}
	return st, nil
}
