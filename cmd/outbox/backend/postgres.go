package backend

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

// defaultConnectTimeout bounds one connection attempt when the URL does not
// say (a database behind a firewall that drops packets would otherwise
// hold a read until its context ends).
const defaultConnectTimeout = 10 * time.Second

func openPostgres(ctx context.Context, raw string, o StoreOptions, bad func(string) error) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(raw) // its errors hide the password
	if err != nil {
		return nil, bad(err.Error())
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = o.appName()
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	scfg := pgstore.Config{Schema: o.Schema, Table: o.Table, Lanes: o.Lanes, Tail: o.Tail}
	if err := scfg.Validate(); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg) // connects lazily
	if err != nil {
		return nil, bad(err.Error())
	}
	store, err := pgstore.New(pool, scfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	c := store.Config()
	addrs := []string{hostPort(cfg.ConnConfig.Host, cfg.ConnConfig.Port)}
	for _, f := range cfg.ConnConfig.Fallbacks {
		addrs = append(addrs, hostPort(f.Host, f.Port))
	}
	slot := ""
	if o.Tail {
		slot = store.Slot()
	}
	return &Store{
		Slot:    slot,
		Outbox:  store,
		Kind:    Postgres,
		Display: Redact(raw) + " table " + c.Schema + "." + c.Table,
		Target: Target{System: systemPostgres, Addr: joinAddrs(addrs), User: cfg.ConnConfig.User,
			Database: cfg.ConnConfig.Database, Table: c.Schema + "." + c.Table, TableKind: "table", URL: Redact(raw)},
		closers: []func() error{func() error { pool.Close(); return nil }},
		slotExists: func(ctx context.Context) (bool, error) {
			var ok bool
			err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, store.Slot()).Scan(&ok)
			return ok, err
		},
		dropTail: store.DropTail,
	}, nil
}
