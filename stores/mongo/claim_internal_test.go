package mongostore

import (
	"context"
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
func internalStore(t *testing.T) *Store {
	t.Helper()
	url, db := mongoserver.Database(t)
	client, err := mongo.Connect(options.Client().ApplyURI(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	s, err := New(client, Config{Database: db, AllowNonTransactional: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// lease leases the records of ids to owner with token, as a claim's update
// does, and returns their candidates.
func lease(t *testing.T, s *Store, owner, token string, ids ...string) []candidate {
	t.Helper()
	ctx := t.Context()
	_, err := s.records.UpdateMany(ctx, bson.D{idsIn(ids)}, bson.D{
		{Key: "$set", Value: bson.D{{Key: fLeaseOwner, Value: owner},
			{Key: fLeaseUntil, Value: time.Now().Add(time.Hour)}, {Key: fLeaseToken, Value: token}}},
		{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: int32(1)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []candidate
	for _, id := range ids {
		var c candidate
		if err := s.records.FindOne(ctx, bson.D{{Key: fID, Value: id}}).Decode(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func attemptsOf(t *testing.T, s *Store, id string) (int32, string) {
	t.Helper()
	var d recordDoc
	if err := s.records.FindOne(t.Context(), bson.D{{Key: fID, Value: id}}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d.Attempts, d.LeaseOwner
}

// The check after the lease catches what the scan missed: a key's older
// record that committed while the scan was past its place (only a
// transaction can do that, so on a server without transactions the check is
// forced on here).
func TestConfirmGivesBackRecordsBehindAnOlderOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := internalStore(t)
	msgs := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "other"}}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.server.now(ctx); err != nil {
		t.Fatal(err)
	}
	s.server.mu.Lock()
	s.server.txn = true
	s.server.mu.Unlock()

	// The scan saw only the key's second record (and another key's).
	picked := lease(t, s, "a", "tok", msgs[1].ID, msgs[2].ID)
	recs, err := s.confirm(ctx, outbox.ClaimParams{Owner: "a"}, picked, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != msgs[2].ID {
		t.Fatalf("confirm returned %v, want only the other key's record", recs)
	}
	if n, owner := attemptsOf(t, s, msgs[1].ID); n != 0 || owner != "" {
		t.Fatalf("the held-back record has attempts %d and owner %q, want its claim undone", n, owner)
	}
}

// A picked record that another claimer leased in between holds back the
// key's later picked records.
func TestConfirmGivesBackRecordsBehindOneItDidNotGet(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := internalStore(t)
	msgs := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	first := lease(t, s, "b", "theirs", msgs[0].ID)
	second := lease(t, s, "a", "ours", msgs[1].ID)
	recs, err := s.confirm(ctx, outbox.ClaimParams{Owner: "a"}, append(first, second...), "ours")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("confirm returned %v, want nothing: the key's first record went to b", recs)
	}
	if n, owner := attemptsOf(t, s, msgs[1].ID); n != 0 || owner != "" {
		t.Fatalf("the held-back record has attempts %d and owner %q, want its claim undone", n, owner)
	}
}

// With StrictOrder, a key whose leased head was dead-lettered after the
// claim first read the dead letters stays held.
func TestDropBehindDead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := internalStore(t)
	msgs := []outbox.Message{{Topic: "t", Key: "k"}, {Topic: "t", Key: "k"}, {Topic: "t", Key: "j"}}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 1, Lease: time.Hour})
	if err != nil || len(recs) != 1 || recs[0].ID != msgs[0].ID {
		t.Fatalf("Claim = %v, %v", recs, err)
	}
	if err := s.DeadLetter(ctx, outbox.DeadLetterParams{Owner: "a", Letters: []outbox.Failure{{ID: msgs[0].ID, Error: "x"}}}); err != nil {
		t.Fatal(err)
	}
	var picked []candidate
	for _, id := range []string{msgs[1].ID, msgs[2].ID} {
		var c candidate
		if err := s.records.FindOne(ctx, bson.D{{Key: fID, Value: id}}).Decode(&c); err != nil {
			t.Fatal(err)
		}
		picked = append(picked, c)
	}
	kept, err := s.dropBehindDead(ctx, picked)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].ID != msgs[2].ID {
		t.Fatalf("dropBehindDead kept %v, want only key j's record", kept)
	}
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
