package outbox

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"
)

// Record is a message as the outbox holds it.
type Record struct {
	Message
	// Seq is the store's position of the record. Within one key it
	// increases in write order; across keys it means nothing to callers.
	Seq int64
	// Lane is the record's lane ([LaneOf] of its key).
	Lane int
	// Attempts counts the failed attempts to publish the record, and the
	// times a relay lost it in flight: when a relay takes over a lane whose
	// owner's lease expired, the first records of the lane are charged one
	// attempt, so a message that crashes relays is dead-lettered after
	// [RelayConfig.MaxAttempts] crashes instead of looping forever.
	Attempts int
	// LastError is the error of the last failed attempt, if any.
	LastError string
	// NotBefore, when set, is when the record may be published again: the
	// end of the backoff of its last failed attempt. Later records of its
	// key wait for it.
	NotBefore time.Time
}

// Store is the relay's view of an outbox. Writing is not part of it: each
// store adapter has its own Enqueue method, because it takes that
// database's transaction type.
//
// Relays divide the work by lanes. Every record belongs to one lane, a
// stable hash of its key ([LaneOf]) modulo the lane count fixed when the
// schema was created; so all records of a key share a lane. A relay leases
// lanes, not records: only the holder of a lane reads and settles its
// records, and because a relay publishes the records of a key one batch at
// a time in the order it read them, per-key order holds by construction
// with any number of relays.
//
// Each lane lease carries an epoch, bumped whenever the lane changes hands.
// Settle applies only to records of lanes still at the epoch the relay
// holds, so a relay that lost a lane (its lease expired while it was
// paused, say) can at most publish duplicates: its late outcomes change
// nothing.
//
// A record is pending from its commit until it is delivered or
// dead-lettered. Every method may be called concurrently.
type Store interface {
	// SyncLanes is the relay's heartbeat. It records p.Owner as a live
	// relay until now+p.Lease, extends to now+p.Lease the leases of the
	// lanes in p.Held that p.Owner still holds at their epoch, and returns
	// every lane and every live relay, so the relay can compute its fair
	// share. Lanes of p.Held held by another owner or at another epoch are
	// lost: the view shows who holds them now.
	SyncLanes(ctx context.Context, p SyncParams) (LaneView, error)

	// TakeLanes gives p.Owner each lane of p.Lanes that is, at the moment
	// of the call, still at the given epoch and free or expired, with its
	// epoch bumped and a lease until now+p.Lease. It returns the lanes
	// taken, with their new epochs; a lane that changed since the caller's
	// view is skipped. Of the lanes taken whose previous owner let its lease
	// expire (instead of releasing them), the first p.Charge pending
	// records that are due (no NotBefore, or one that has passed), in Seq
	// order across those lanes, are charged one attempt each: they may
	// have been in flight when that relay died (a relay reads its lanes
	// in Seq order and holds at most that many records).
	TakeLanes(ctx context.Context, p TakeParams) ([]Lane, error)

	// ReleaseLanes frees the lanes of p.Lanes that p.Owner still holds at
	// their epoch, so another relay can take them at once and charge
	// nothing. With p.Leave, p.Owner is no longer a live relay either.
	ReleaseLanes(ctx context.Context, p ReleaseLanesParams) error

	// Read returns up to p.Limit pending records of the lanes p.Lanes with
	// a Seq above p.AfterSeq, in ascending Seq, leaving out the records
	// listed in p.SkipIDs, records whose key is in p.SkipKeys and, with
	// p.StrictOrder, records with an earlier dead letter of their key. It
	// reads only: it changes nothing and takes no lock. An empty result
	// and a nil error mean there is nothing to do now.
	//
	// The relay reads from the head of its lanes every time (AfterSeq 0),
	// leaving out what it already holds (SkipIDs, SkipSeqs): a record whose
	// transaction committed late, below records already read, is then
	// found by the very next read, before any record its key writes after
	// it. A cursor (reading above the last Seq seen) would skip it until
	// the cursor came back, and let its key's next record overtake it.
	Read(ctx context.Context, p ReadParams) ([]Record, error)

	// Settle records the outcomes of published records: delivered ones
	// are deleted (or, with p.Retain, marked delivered), retries keep their
	// error and wait for their delay, dead letters are set aside. Each outcome applies only when its record's lane is
	// held at the epoch given in p.Lanes (whoever holds it, and even if its
	// lease has run out meanwhile, as long as nobody took it over); other
	// outcomes, and records already delivered or dead, are ignored.
	// Delivered and failed records each cost one statement.
	Settle(ctx context.Context, p SettleParams) error
}

// DefaultLanes is the lane count that stores create when their
// configuration does not set one.
const DefaultLanes = 256

// MaxLanes bounds the lane count.
const MaxLanes = 4096

// LaneOf returns the lane of a record among lanes: the 32-bit FNV-1a hash of
// its key modulo lanes. A record without a key is ordered by nothing, so it
// goes to the lane of its ID instead, which spreads such records over all
// lanes. Every store computes lanes with this function.
func LaneOf(key, id string, lanes int) int {
	if lanes <= 1 {
		return 0
	}
	s := key
	if s == "" {
		s = id
	}
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int(h % uint32(lanes))
}

// Lane is a lane lease as its holder knows it.
type Lane struct {
	// ID is the lane's number, from 0 to the lane count minus one.
	ID int
	// Epoch is the fencing token of the lease: it changes whenever the
	// lane changes hands.
	Epoch int64
}

// LaneState is a lane as the store sees it.
type LaneState struct {
	Lane
	// Owner holds the lane; empty when the lane is free.
	Owner string
	// Until is when the lease ends unless renewed.
	Until time.Time
}

// LaneView is what [Store.SyncLanes] returns.
type LaneView struct {
	// Now is the store's clock at the time of the call; lease expiries
	// compare to it, never to the relay's clock.
	Now time.Time
	// Lanes lists every lane, by ID.
	Lanes []LaneState
	// Relays lists the live relays (those whose last SyncLanes lease has
	// not run out), with the owner of the call among them.
	Relays []string
}

// SyncParams are the arguments of [Store.SyncLanes].
type SyncParams struct {
	// Owner identifies the relay instance. Required, and unique to one
	// run of one relay: an owner that restarts must not reuse it.
	Owner string
	// Lease is how long the owner and its renewed lanes stay live. Positive.
	Lease time.Duration
	// Held are the lanes the owner believes it holds.
	Held []Lane
}

// TakeParams are the arguments of [Store.TakeLanes].
type TakeParams struct {
	Owner string
	Lease time.Duration
	// Lanes to take, each at the epoch the caller saw.
	Lanes []Lane
	// Charge is how many of the first pending records of the lanes taken
	// from expired owners are charged an attempt; records waiting out a
	// retry delay (NotBefore in the future) were not in flight and are
	// neither charged nor counted.
	Charge int
}

// ReleaseLanesParams are the arguments of [Store.ReleaseLanes].
type ReleaseLanesParams struct {
	Owner string
	Lanes []Lane
	// Leave also ends the owner's membership, on shutdown.
	Leave bool
}

// ReadParams are the arguments of [Store.Read].
type ReadParams struct {
	// Lanes to read, by ID.
	Lanes []int
	// AfterSeq reads records with a Seq above it; zero reads from the
	// oldest pending record. For paging by tools; the relay uses zero.
	AfterSeq int64
	// SkipIDs leaves out these records (the ones the relay holds, queued
	// or in flight).
	SkipIDs []string
	// SkipSeqs holds the Seqs of the records of SkipIDs, as ascending,
	// disjoint ranges of consecutive values ([SeqRanges]): every Seq in a
	// range is one of theirs. A store whose Seqs are never given twice may
	// leave the records out by these instead of by ID: a Seq is in the
	// index that orders the read, so a record is left out without fetching
	// its row, and a long range can be passed over whole. A store whose
	// Seqs may repeat (two records, one Seq; or a deleted record's Seq
	// given to a later one, whose record a stale list would drop) must
	// decide by SkipIDs.
	SkipSeqs []SeqRange
	// Limit is the most records to return. Positive.
	Limit int
	// SkipKeys leaves out the records of these keys (keys whose earlier
	// record waits for a retry in the relay's memory).
	SkipKeys []string
	// StrictOrder leaves out records that have a dead letter of their key
	// before them, until it is replayed or purged.
	StrictOrder bool
}

// SeqRange is the range of Seqs from From to To, both included.
type SeqRange struct{ From, To int64 }

// SeqRanges returns seqs as ascending, disjoint ranges, each of
// consecutive values, the fewest that hold them all and nothing else. It
// sorts seqs.
func SeqRanges(seqs []int64) []SeqRange {
	slices.Sort(seqs)
	var out []SeqRange
	for _, s := range seqs {
		if n := len(out); n > 0 && s <= out[n-1].To+1 {
			out[n-1].To = max(out[n-1].To, s)
			continue
		}
		out = append(out, SeqRange{s, s})
	}
	return out
}

// LongRuns splits ranges (as from [SeqRanges]) for a store's Read: the
// ranges of at least minLen Seqs, at most maxRuns of them (the longest),
// in ascending order, which the store can pass over in its index, and the
// Seqs of the others, which it tests on each row it reads.
func LongRuns(ranges []SeqRange, minLen, maxRuns int) (runs []SeqRange, rest []int64) {
	rest = []int64{}
	for _, r := range ranges {
		if r.To-r.From+1 >= int64(minLen) {
			runs = append(runs, r)
			continue
		}
		for seq := r.From; seq <= r.To; seq++ {
			rest = append(rest, seq)
		}
	}
	if len(runs) > maxRuns {
		slices.SortStableFunc(runs, func(a, b SeqRange) int { return cmp.Compare(b.To-b.From, a.To-a.From) })
		for _, r := range runs[maxRuns:] {
			for seq := r.From; seq <= r.To; seq++ {
				rest = append(rest, seq)
			}
		}
		runs = runs[:maxRuns]
		slices.SortFunc(runs, func(a, b SeqRange) int { return cmp.Compare(a.From, b.From) })
	}
	return runs, rest
}

// SettleParams are the arguments of [Store.Settle].
type SettleParams struct {
	// Lanes are the epochs at which the caller holds the lanes of the
	// records below. An outcome for a record of another lane, or of a
	// lane at another epoch, is ignored.
	Lanes []Lane
	// Delivered lists records the broker acknowledged, by ID. They are
	// deleted, unless Retain is set: then they are marked delivered and
	// kept, for [Cleaner.Cleanup] to delete later.
	Delivered []string
	// Retain keeps delivered records (see [RelayConfig.Retention]).
	Retain bool
	// Retries lists records that failed and will be tried again. Their
	// attempt count grows by one.
	Retries []Retry
	// Dead lists records given up on. Their attempt count grows by one.
	Dead []Failure
}

// Retry is one record to try again.
type Retry struct {
	ID string
	// Error is the failure, kept as the record's LastError.
	Error string
	// Delay is measured from the store's clock at the time of the call;
	// the store keeps now+Delay as the record's NotBefore.
	Delay time.Duration
}

// Failure is one record that failed, with its error.
type Failure struct {
	ID    string
	Error string
}

// Listener is implemented by stores that can announce new records
// (PostgreSQL LISTEN/NOTIFY, MongoDB change streams). Notifications are
// wake-ups only: the relay keeps polling as the safety net, because they
// are lost behind transaction-pooling proxies and across reconnects.
type Listener interface {
	// Listen returns a channel that receives a value soon after records
	// are committed. The store reconnects on its own; the channel is
	// closed when ctx ends or the store gives up, and the relay then calls
	// Listen again after a backoff. An error matching [ErrUnsupported]
	// means this deployment cannot notify (e.g. MongoDB without change
	// streams): the relay then polls only.
	Listen(ctx context.Context) (<-chan struct{}, error)
}

// Cleaner is implemented by stores that can delete delivered records.
type Cleaner interface {
	// Cleanup deletes at most p.Limit records delivered more than
	// p.OlderThan ago and returns how many it deleted. Undelivered and dead
	// records are never deleted.
	Cleanup(ctx context.Context, p CleanupParams) (int, error)
}

// CleanupParams are the arguments of [Cleaner.Cleanup].
type CleanupParams struct {
	OlderThan time.Duration
	Limit     int
}

// StatsReader is implemented by stores that can report on their backlog.
type StatsReader interface {
	Stats(ctx context.Context) (Stats, error)
}

// Stats describe an outbox at one moment.
type Stats struct {
	// Pending counts records not yet delivered and not dead.
	Pending int64
	// Retrying counts pending records that failed at least once since they
	// were written or replayed (a counted attempt).
	Retrying int64
	// Replayed counts pending records replayed from the dead letters
	// ([DeadLetterStore.ReplayDead]) and not attempted since: they keep the
	// error that dead-lettered them, with no attempt counted.
	Replayed int64
	// Dead counts dead letters.
	Dead int64
	// OldestPending is the CreatedAt of the oldest pending record, zero
	// when nothing is pending. time.Since(OldestPending) is the lag.
	OldestPending time.Time
	// Relays lists the live relays and the lanes each holds, most lanes
	// first.
	Relays []RelayLanes
	// Lanes is the lane count of the outbox.
	Lanes int
	// Lagging lists the lanes with pending records, the oldest pending
	// record first, at most 10 of them.
	Lagging []LaneLag
	// Topics lists the topics that have pending records or dead letters,
	// at most [MaxStatsTopics] of them: those with pending records first,
	// the oldest pending record first, then those with dead letters only,
	// most dead letters first; ties by topic name in byte order. Topics
	// whose records are all delivered are not listed, and a store counts
	// them without reading a delivered record.
	Topics []TopicStats
	// Log describes the log that relays tail ([LogTailer]). It is nil for
	// stores that do not tail one; a store configured not to tail may still
	// report a log left behind by an earlier configuration, which retains
	// the database's log until it is dropped (PostgreSQL: a replication
	// slot).
	Log *LogStats
}

// LogStats describes the log of an outbox whose relays tail it
// ([LogTailer]): for PostgreSQL, its logical replication slot. Records in
// the log are not in Pending, which counts the table only.
type LogStats struct {
	// Slot names the log (the replication slot).
	Slot string
	// Missing is set when the slot does not exist: writers fail (or, if
	// it was dropped while they wrote, their messages are lost) until it is
	// created again. The other fields are then zero.
	Missing bool
	// Holder is the Owner of the relay that streams from the log, empty
	// when none does.
	Holder string
	// LagBytes is how far the log's confirmed position is behind its end:
	// the log written since the last record the relays confirmed (delivered
	// or parked), whether or not it holds records of this outbox.
	LagBytes int64
	// LagSeconds is how long ago the holder was sent the oldest record it
	// has not confirmed, as the database measures it (PostgreSQL:
	// pg_stat_replication.flush_lag); nil when unknown: no relay holds the
	// log, it confirmed everything it was sent a while ago, or the
	// database does not show it to this role (PostgreSQL: it needs
	// pg_read_all_stats).
	LagSeconds *float64
	// RetainedBytes is the log that the database keeps for the slot and
	// cannot recycle. A slot that no relay reads retains more and more.
	RetainedBytes int64
	// Lost is set when the database gave up the log the slot still needed
	// (PostgreSQL: wal_status "lost", after max_slot_wal_keep_size): the
	// records in it are gone, and the slot must be dropped and created
	// again.
	Lost bool
}

// MaxStatsTopics caps [Stats.Topics], so that the statistics of an outbox
// with thousands of topics stay small. The topics left out are the ones
// that lag least; Stats.Pending and Stats.Dead still count all of them.
const MaxStatsTopics = 50

// TopicStats describes the backlog and the dead letters of one topic.
type TopicStats struct {
	Topic string
	// Pending counts its records not yet delivered and not dead.
	Pending int64
	// Dead counts its dead letters.
	Dead int64
	// OldestPending is the CreatedAt of its oldest pending record, zero
	// when none is pending. time.Since(OldestPending) is its lag.
	OldestPending time.Time
}

// SortTopicStats sorts topics in the order of [Stats.Topics] and keeps the
// first [MaxStatsTopics]; stores that aggregate in Go use it.
func SortTopicStats(topics []TopicStats) []TopicStats {
	slices.SortFunc(topics, func(a, b TopicStats) int {
		return cmp.Or(
			cmp.Compare(boolRank(a.OldestPending.IsZero()), boolRank(b.OldestPending.IsZero())),
			a.OldestPending.Compare(b.OldestPending),
			cmp.Compare(b.Dead, a.Dead),
			strings.Compare(a.Topic, b.Topic))
	})
	return topics[:min(len(topics), MaxStatsTopics)]
}

// boolRank puts false before true.
func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// RelayLanes tells how many lanes one live relay holds.
type RelayLanes struct {
	Owner string
	Lanes int
	// Until is when its membership ends unless renewed.
	Until time.Time
}

// LaneLag describes the backlog of one lane.
type LaneLag struct {
	Lane int
	// Owner holds the lane, empty when nobody does.
	Owner   string
	Pending int64
	// OldestPending is the CreatedAt of its oldest pending record.
	OldestPending time.Time
}

// DeadLetterStore is implemented by stores that can list, replay and purge
// dead letters.
type DeadLetterStore interface {
	// ListDead returns dead letters in the order they were written.
	ListDead(ctx context.Context, p ListDeadParams) ([]DeadLetter, error)
	// ReplayDead makes dead letters deliverable again with their attempt
	// count reset, and returns how many it replayed.
	ReplayDead(ctx context.Context, p SelectDead) (int, error)
	// PurgeDead deletes dead letters and returns how many it deleted.
	PurgeDead(ctx context.Context, p SelectDead) (int, error)
}

// DeadLetterBacklog is implemented by dead-letter stores that can tell what
// a replay would hold back. Once replayed, a dead letter is again the
// earliest undelivered record of its key, so the pending records of its key
// written after it wait until it is delivered, or dead-lettered again after
// its retries. Without [RelayConfig.StrictOrder] they were flowing until
// the replay; with it they were waiting already.
type DeadLetterBacklog interface {
	// WaitingBehindDead counts the pending records (not delivered, not
	// dead) that share a key with one of the selected dead letters and were
	// written after the earliest of them. Dead letters without a key hold
	// nothing back.
	WaitingBehindDead(ctx context.Context, p SelectDead) (Waiting, error)
}

// Waiting is what [DeadLetterBacklog.WaitingBehindDead] counts.
type Waiting struct {
	// Records counts the pending records of the dead letters' keys.
	Records int64
	// Keys counts the keys those records have.
	Keys int64
}

// ListDeadParams are the arguments of [DeadLetterStore.ListDead].
type ListDeadParams struct {
	// IDs, when set, lists only these dead letters.
	IDs []string
	// AfterSeq lists dead letters with a Seq above it (for paging: pass
	// the Seq and ID of the last dead letter of the previous page).
	AfterSeq int64
	// AfterID, with AfterSeq, also lists dead letters with a Seq equal to
	// AfterSeq and an ID above AfterID. Stores whose Seq is unique across
	// keys (all but MongoDB) may ignore it.
	AfterID string
	// Limit is the most to return; zero means 100.
	Limit int
}

// SelectDead picks dead letters: the listed IDs, or all of them when All is
// set. IDs that are not dead letters are ignored.
type SelectDead struct {
	IDs []string
	All bool
}

// DeadLetter is a record that was given up on.
type DeadLetter struct {
	Record
	// DeadAt is when it was dead-lettered.
	DeadAt time.Time
}

// Migrator is implemented by stores that create their own schema.
type Migrator interface {
	// Migrate brings the schema to the current version. It is idempotent
	// and safe to run from several processes at once.
	Migrate(ctx context.Context) error
}

// Pinger is implemented by stores and publishers that can check that their
// server answers. Health endpoints use it.
type Pinger interface {
	Ping(ctx context.Context) error
}
