package pgstore

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
)

func TestStoreSuite(t *testing.T) {
	t.Parallel()
	conformance.RunStoreSuite(t, harness())
}

func TestRelaySuite(t *testing.T) {
	t.Parallel()
	conformance.RunRelaySuite(t, conformance.RelayHarness{
		Store:  harness(),
		Broker: conformance.MemoryBroker(),
		// Longer than the suite's default: the relay keeps delivering
		// later records while this writer's transaction stays open.
		HoldOpen: 6 * time.Second,
	})
}

// The suites again with writers on database/sql (pgx's stdlib driver),
// enqueueing with EnqueueSQL: atomicity, order and the rest hold for them
// too.
func TestSuitesThroughDatabaseSQL(t *testing.T) {
	t.Parallel()
	t.Run("Store", func(t *testing.T) {
		t.Parallel()
		conformance.RunStoreSuite(t, sqlHarness())
	})
	t.Run("Relay", func(t *testing.T) {
		t.Parallel()
		conformance.RunRelaySuite(t, conformance.RelayHarness{Store: sqlHarness(), Broker: conformance.MemoryBroker()})
	})
}

// Sessions other than pgx's defaults. Behind PgBouncer in transaction mode,
// pgx runs without prepared statements (QueryExecModeSimpleProtocol): a
// batch is then one multi-statement query, which PostgreSQL still runs as
// one implicit transaction. And a database whose default isolation is
// REPEATABLE READ would make the statements that lock lanes and records
// fail when another transaction changed them meanwhile, and give Migrate a
// snapshot older than the lock it waits for, unless they ask for READ
// COMMITTED, as they do. The store suite again, in both.
func TestStoreSuiteOtherSessionDefaults(t *testing.T) {
	t.Parallel()
	conformance.RunStoreSuite(t, conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
		_, schema := pgserver.Schema(t)
		pool := namedPool(t, "pgstore-session-defaults", func(cfg *pgxpool.Config) {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
			cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "repeatable read"
		})
		s, err := New(pool, Config{Schema: schema, Limits: opts.Limits, Lanes: opts.Lanes})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return outboxOf(s, pool)
	}})
}
