package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
)

// Target is one store × broker pair under test, fresh for one scenario.
type Target struct {
	// Outbox is the store side, for the writers. Its Store must be an
	// outbox.DeadLetterStore for the poison scenario.
	Outbox conformance.Outbox
	// Broker is the broker side, for the consumer. Its Consume must ride
	// out a broker outage (reconnect and continue), or the outage scenario
	// fails on the consumer.
	Broker conformance.Broker
	// Topic is the topic the writers use; it exists on the broker.
	Topic string

	// StartRelay starts one relay on Outbox and Broker. In the usual case it
	// is a separate process, so that Kill is a real SIGKILL.
	StartRelay func(ctx context.Context, spec RelaySpec) (Relay, error)

	// KillConnections, when set, kills the database connections other than
	// the caller's (pg_terminate_backend, MySQL KILL CONNECTION) and returns
	// how many it killed.
	KillConnections func(ctx context.Context) (int, error)

	// Broker outage, when set: StopBroker takes the broker down, keeping its
	// data, and StartBroker brings it back on the same address.
	StopBroker  func() error
	StartBroker func() error

	// Database restart, when set: StopStore shuts the database server
	// down, fast (PostgreSQL's SIGINT: clients disconnected, a checkpoint)
	// or immediate (SIGQUIT: no checkpoint, recovery from the WAL at the
	// next start, as after a crash), keeping its data; StartStore starts it
	// again on the same address.
	StopStore  func(immediate bool) error
	StartStore func() error

	// SingleWriter says the store lets one write transaction in at a time
	// (SQLite): scenarios that keep a write transaction open while other
	// writers commit skip.
	SingleWriter bool

	// Poison, when set, makes a message the broker rejects until Fix is
	// called (for example a payload over the broker's size limit, and a
	// larger limit).
	Poison *Poison
}

// Poison describes a message the broker keeps rejecting.
type Poison struct {
	// Payload is rejected by the broker until Fix.
	Payload []byte
	// Fix makes the broker accept Payload.
	Fix func(ctx context.Context) error
	// Permanent says the broker's refusal is permanent (outbox.ErrPermanent,
	// e.g. a size limit): the message is dead-lettered at its first attempt
	// instead of after MaxAttempts.
	Permanent bool
}

// RelaySpec configures one relay started by [Target.StartRelay].
type RelaySpec struct {
	Owner          string
	BatchSize      int
	Concurrency    int
	Lease          time.Duration
	PublishTimeout time.Duration
	MaxAttempts    int
	MinRetryDelay  time.Duration
	MaxRetryDelay  time.Duration
	PollInterval   time.Duration
}

// Relay is a running relay.
type Relay interface {
	// Kill ends the relay at once, as a crash would: no graceful shutdown,
	// its lanes stay leased until their lease expires.
	Kill() error
	// Pause freezes the relay (SIGSTOP for a process) and Resume lets it
	// go on (SIGCONT): a relay paused past its lease wakes up as a zombie
	// whose lanes other relays have taken.
	Pause() error
	Resume() error
	// Stop ends the relay gracefully and waits for it.
	Stop() error
}

// Options scale a run. [Short] is for CI; [Long] for `make chaos`.
type Options struct {
	// Events is how many messages the writers commit.
	Events int
	// Rate is the writers' total rate in events per second, so that faults
	// happen while they write. Zero means as fast as possible.
	Rate int
	// Writers and Keys: each key belongs to one writer, which writes it in
	// order, so its commit order is known.
	Writers, Keys int
	// Kills is how many times the relay scenarios kill a relay.
	Kills int
	// Outage is how long the broker stays down.
	Outage time.Duration
	// Hold is how long the late-commit scenario keeps its transaction open.
	Hold time.Duration
	// ConnectionKills is how many times the connection-loss scenario kills
	// the database connections.
	ConnectionKills int
	// Timeout bounds each scenario (a deadlock guard, not a speed goal).
	Timeout time.Duration
	// Only, when not empty, names the scenarios to run (the others are
	// left out of the results).
	Only []string
	// Restart is how long the database stays down in the restart
	// scenarios.
	Restart time.Duration
	// Parallel is how many scenarios of a pair run at once (0 or 1: one
	// after the other). Most of a scenario is waiting: for leases to
	// expire, for paced writers, for an outage or a held transaction.
	Parallel int
}

// Short is the CI version: a few faults, small counts.
func Short() Options {
	return Options{Events: 1500, Rate: 1000, Writers: 4, Keys: 100, Kills: 4, Outage: 2 * time.Second,
		Hold: 2 * time.Second, ConnectionKills: 4, Restart: time.Second, Timeout: 2 * time.Minute, Parallel: 3}
}

// Long is the full version: 20,000 events, 20 kills, a 6-second outage, a
// 10-second late commit, one scenario at a time (its table reports recovery
// times, which scenarios running beside it would stretch).
func Long() Options {
	return Options{Events: 20000, Rate: 800, Writers: 8, Keys: 1000, Kills: 20, Outage: 6 * time.Second,
		Hold: 10 * time.Second, ConnectionKills: 20, Restart: 3 * time.Second, Timeout: 10 * time.Minute}
}

// relaySpec is the configuration of the scenarios' relays: leases short
// enough that a killed relay's lanes are taken over within seconds.
func relaySpec(owner string) RelaySpec {
	return RelaySpec{
		Owner:          owner,
		BatchSize:      100,
		Concurrency:    2,
		Lease:          4 * time.Second,
		PublishTimeout: 2 * time.Second,
		MaxAttempts:    1000, // faults must not dead-letter healthy messages
		MinRetryDelay:  20 * time.Millisecond,
		MaxRetryDelay:  500 * time.Millisecond,
		PollInterval:   200 * time.Millisecond,
	}
}

// NewTarget builds a fresh Target for one scenario; it cleans up with t.
type NewTarget func(t *testing.T) Target
