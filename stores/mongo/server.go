package mongostore

import (
	"context"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// clockRefresh is how often the store measures the server's clock again.
const clockRefresh = 30 * time.Second

// server is what the store knows of the deployment: an estimate of the
// server's clock, whether it can run transactions, and whether it is
// FerretDB.
//
// The clock estimate lets relays on machines whose clocks disagree still
// agree on when a lease expires or a retry is due. Update pipelines with
// $$NOW would read the server's clock exactly, but FerretDB has none, so the
// store measures the offset between its own clock and the localTime that
// the primary reports in hello, every clockRefresh: the estimate is off by
// at most half a round trip plus a millisecond (hello has millisecond
// precision) plus the drift since the last measurement.
type server struct {
	client *mongo.Client

	mu       sync.Mutex
	offset   time.Duration // server minus local
	measured time.Time     // local time of the last measurement; zero before the first
	busy     bool          // a measurement is under way
	txn      bool          // the deployment is a replica set or a sharded cluster
	ferret   bool          // the server is FerretDB
}

// now returns the server's time, measuring the offset first when it has
// never been measured or is stale. Only the first measurement can fail the
// call; later ones fall back to the last offset.
func (c *server) now(ctx context.Context) (time.Time, error) {
	c.mu.Lock()
	never := c.measured.IsZero()
	stale := never || time.Since(c.measured) > clockRefresh
	measure := stale && (never || !c.busy)
	if measure {
		c.busy = true
	}
	offset := c.offset
	c.mu.Unlock()

	if measure {
		off, txn, err := c.measure(ctx)
		var ferret bool
		if err == nil && never {
			ferret, err = c.isFerretDB(ctx)
		}
		c.mu.Lock()
		c.busy = false
		if err == nil {
			c.offset, c.measured, c.txn, offset = off, time.Now(), txn, off
			if never {
				c.ferret = ferret
			}
		}
		c.mu.Unlock()
		if err != nil && never {
			return time.Time{}, fail("read the server's clock", err)
		}
	}
	return time.Now().Add(offset), nil
}

// measure asks the primary for its time and returns its offset from ours,
// and whether the deployment can run transactions: a replica set member
// reports its set's name, a mongos says "isdbgrid".
func (c *server) measure(ctx context.Context) (time.Duration, bool, error) {
	var hello struct {
		LocalTime time.Time `bson:"localTime"`
		SetName   string    `bson:"setName"`
		Msg       string    `bson:"msg"`
	}
	start := time.Now()
	err := c.client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}},
		runOnPrimary).Decode(&hello)
	end := time.Now()
	if err != nil {
		return 0, false, err
	}
	txn := hello.SetName != "" || hello.Msg == "isdbgrid"
	if hello.LocalTime.IsZero() {
		return 0, txn, nil // a server that does not say: trust our own clock
	}
	mid := start.Add(end.Sub(start) / 2)
	return hello.LocalTime.Sub(mid.Round(0)), txn, nil
}

// isFerretDB asks buildInfo whether the server is FerretDB, which reports
// its own version beside the MongoDB version it imitates.
func (c *server) isFerretDB(ctx context.Context) (bool, error) {
	var info struct {
		FerretDBVersion string `bson:"ferretdbVersion"`
	}
	err := c.client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}, runOnPrimary).Decode(&info)
	return info.FerretDBVersion != "", err
}

// isFerret reports whether the server is FerretDB, as first measured.
func (c *server) isFerret() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ferret
}

// transactional reports whether the deployment, as last measured, can run
// transactions; true before the first measurement, to be safe.
func (c *server) transactional() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.txn || c.measured.IsZero()
}

// estimate returns the server's time by the last measured offset, without
// measuring; before any measurement it is the local time.
func (c *server) estimate() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

var runOnPrimary = options.RunCmd().SetReadPreference(readpref.Primary())

// microClock hands out microsecond timestamps that never repeat nor go
// backwards in this process, even when the wall clock does: the raw
// material of sequence numbers.
type microClock struct {
	mu   sync.Mutex
	last int64
}

// reserve returns the first of n consecutive fresh timestamps.
func (c *microClock) reserve(n int, now time.Time) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := max(now.UnixMicro(), c.last+1)
	c.last = base + int64(n) - 1
	return base
}

// advance makes later timestamps larger than v.
func (c *microClock) advance(v int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(c.last, v)
}
