package mongostore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// internalStore returns a migrated store that writes without transactions
// (these tests shape records by hand).
func internalStore(t testing.TB, lanes int) *Store {
	t.Helper()
	url, db := mongoserver.Database(t)
	client, err := mongo.Connect(options.Client().ApplyURI(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	s, err := New(client, Config{Database: db, AllowNonTransactional: true, Lanes: lanes})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.server.now(t.Context()); err != nil { // learns whether it is FerretDB
		t.Fatal(err)
	}
	return s
}

// backlog inserts n pending records over keys keys, in batches, as Enqueue
// would store them.
func backlog(t testing.TB, s *Store, n, keys int) {
	t.Helper()
	lanes, err := s.lanesCount(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < n; i += 1000 {
		var docs []any
		for j := i; j < min(n, i+1000); j++ {
			m := outbox.Message{ID: fmt.Sprintf("id-%07d", j), Topic: "t", Key: fmt.Sprintf("key-%d", j%keys),
				Payload: []byte("payload"), CreatedAt: now}
			docs = append(docs, newRecordDoc(m, int64(j+1), lanes))
		}
		if _, err := s.records.InsertMany(t.Context(), docs); err != nil {
			t.Fatal(err)
		}
	}
}

// Read's plan: the "pending" index in Seq order, no sort of the backlog,
// whether the relay reads all lanes or a quarter of them, with the first
// 3,000 records skipped by ID (as the relay skips those it holds) or not.
// MongoDB plans
// from trial runs, not statistics, and the hint fixes the plan anyway; the
// test checks the plan on a backlog far larger than one batch.
func TestReadPlan(t *testing.T) {
	t.Parallel()
	s := internalStore(t, 256)
	n := 100_000
	if s.server.isFerret() {
		n = 5_000 // FerretDB reads slowly; its plan is PostgreSQL's, logged below
	}
	backlog(t, s, n, 1000)
	all := make([]int, 256)
	for i := range all {
		all[i] = i
	}
	head := make([]string, 3000)
	for i := range head {
		head[i] = fmt.Sprintf("id-%07d", i)
	}
	for _, c := range []struct {
		name  string
		lanes []int
		skip  []string
	}{
		{"all lanes", all, nil}, {"a quarter of the lanes", all[:64], nil},
		{"all lanes, 3000 skipped IDs", all, head}, {"a quarter of the lanes, 3000 skipped IDs", all[:64], head},
	} {
		p := outbox.ReadParams{Lanes: c.lanes, Limit: 100, SkipKeys: []string{"key-1"}, SkipIDs: c.skip}
		filter, opts := s.readQuery(p)
		explain := explainFind(t, s, filter, opts)
		if c.skip != nil {
			t.Logf("%s: explain: %.3000s ...", c.name, fmt.Sprint(explain))
		} else {
			t.Logf("%s: explain: %s", c.name, explain)
		}
		if !s.server.isFerret() {
			plan := fmt.Sprint(explain["queryPlanner"].(bson.M)["winningPlan"])
			for _, bad := range []string{"SORT", "COLLSCAN"} {
				if contains(plan, bad) {
					t.Errorf("%s: the winning plan has a %s stage: %s", c.name, bad, plan)
				}
			}
			if !contains(plan, "IXSCAN") || !contains(plan, pendingIndex) {
				t.Errorf("%s: the winning plan does not scan the %q index: %s", c.name, pendingIndex, plan)
			}
		}
		recs, err := s.Read(t.Context(), p)
		if err != nil || len(recs) != p.Limit {
			t.Fatalf("%s: Read = %d records, %v; want a full batch of %d", c.name, len(recs), err, p.Limit)
		}
		for i, r := range recs {
			if i > 0 && r.Seq <= recs[i-1].Seq {
				t.Fatalf("%s: Read out of Seq order at %d", c.name, i)
			}
			if c.skip != nil && r.Seq <= int64(len(c.skip)) {
				t.Fatalf("%s: Read returned the skipped record %s", c.name, r.ID)
			}
		}
	}
}

func contains(s, sub string) bool { return len(sub) > 0 && bytesIndex(s, sub) >= 0 }

func bytesIndex(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// explainFind runs explain on Read's find.
func explainFind(t testing.TB, s *Store, filter bson.D, opts *options.FindOptionsBuilder) bson.M {
	t.Helper()
	var fo options.FindOptions
	for _, set := range opts.List() {
		if err := set(&fo); err != nil {
			t.Fatal(err)
		}
	}
	find := bson.D{{Key: "find", Value: s.records.Name()}, {Key: "filter", Value: filter},
		{Key: "sort", Value: fo.Sort}, {Key: "limit", Value: *fo.Limit}}
	if fo.Hint != nil {
		find = append(find, bson.E{Key: "hint", Value: fo.Hint})
	}
	var out bson.M
	err := s.records.Database().RunCommand(t.Context(), bson.D{{Key: "explain", Value: find}, {Key: "verbosity", Value: "queryPlanner"}}).Decode(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMicroClockNeverRepeats(t *testing.T) {
	t.Parallel()
	var c microClock
	now := time.Now()
	a := c.reserve(3, now)
	b := c.reserve(1, now.Add(-time.Hour)) // the wall clock went back
	if b != a+3 {
		t.Fatalf("reserve after a block of 3 at %d returned %d, want %d", a, b, a+3)
	}
	c.advance(b + 100)
	if d := c.reserve(1, now); d != b+101 {
		t.Fatalf("reserve after advance(%d) = %d, want %d", b+100, d, b+101)
	}
}

// BenchmarkReadSkipIDs measures a Read of 500 records as the relay sends
// it, from the head of its lanes, with no skipped IDs and with the 3,000
// records at the head skipped (the records it holds, queued or in
// flight), for a relay holding every lane and one holding a quarter of
// them, over a backlog of 20,000 records (1,000 keys).
//
//	go test -run '^$' -bench ReadSkipIDs -benchtime 2s .
func BenchmarkReadSkipIDs(b *testing.B) {
	s := internalStore(b, 256)
	backlog(b, s, 20_000, 1000)
	all := make([]int, 256)
	for i := range all {
		all[i] = i
	}
	for _, lanes := range [][]int{all, all[:64]} {
		head, err := s.Read(b.Context(), outbox.ReadParams{Lanes: lanes, Limit: 3000})
		if err != nil || len(head) != 3000 {
			b.Fatalf("read %d: %v", len(head), err)
		}
		skipIDs := make([]string, len(head))
		for i, r := range head {
			skipIDs[i] = r.ID
		}
		for _, skip := range []int{0, 3000} {
			b.Run(fmt.Sprintf("lanes=%d/skip=%d", len(lanes), skip), func(b *testing.B) {
				p := outbox.ReadParams{Lanes: lanes, Limit: 500, SkipIDs: skipIDs[:skip]}
				for range b.N {
					recs, err := s.Read(b.Context(), p)
					if err != nil || len(recs) != 500 {
						b.Fatalf("read %d: %v", len(recs), err)
					}
				}
			})
		}
	}
}
