package pgstore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	outbox "github.com/txoutbox/txoutbox/core"
)

// write enqueues one message per key, in one transaction, and returns their
// IDs by key and index: "h0", "h1", ..., "x0", and "u0" for the empty key.
func writeKeys(t *testing.T, ctx context.Context, s *Store, pool *pgxpool.Pool, keys ...string) map[string]string {
	t.Helper()
	ids := make(map[string]string)
	seen := make(map[string]int)
	msgs := make([]outbox.Message, len(keys))
	for i, k := range keys {
		msgs[i] = outbox.Message{Topic: "t", Key: k}
	}
	if err := enqueueCommitted(ctx, pool, s, msgs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		name := m.Key
		if name == "" {
			name = "u"
		}
		ids[fmt.Sprintf("%s%d", name, seen[name])] = m.ID
		seen[name]++
	}
	return ids
}

func claimNames(t *testing.T, ctx context.Context, s *Store, ids map[string]string, owner string, limit int, strict bool) []string {
	t.Helper()
	recs, err := s.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: limit, Lease: time.Hour, StrictOrder: strict})
	if err != nil {
		t.Fatal(err)
	}
	byID := make(map[string]string)
	for name, id := range ids {
		byID[id] = name
	}
	names := make([]string, len(recs))
	for i, r := range recs {
		names[i] = byID[r.ID]
	}
	return names
}

func repeatKey(k string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = k
	}
	return keys
}

// When the oldest records are a hot key's backlog held back behind its
// leased head, the claim still finds the other keys and the records without
// key beyond them, and never a successor of the held key.
func TestClaimPastAClog(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	s.claimWindow = func(int) int { return 4 }
	ids := writeKeys(t, ctx, s, pool, append(repeatKey("h", 10), "", "x", "x", "y")...)

	if got := claimNames(t, ctx, s, ids, "a", 1, false); !slices.Equal(got, []string{"h0"}) {
		t.Fatalf("first claim = %v, want the oldest record h0", got)
	}
	if got := claimNames(t, ctx, s, ids, "b", 10, false); !slices.Equal(got, []string{"u0", "x0", "x1", "y0"}) {
		t.Fatalf("claim past the held key h = %v, want u0 x0 x1 y0 (in Seq order) and nothing of h", got)
	}

	// The head of h dies: in strict order h stays held, by default it
	// continues, from the window into the walk.
	if err := s.DeadLetter(ctx, outbox.DeadLetterParams{Owner: "a", Letters: []outbox.Failure{{ID: ids["h0"], Error: "poison"}}}); err != nil {
		t.Fatal(err)
	}
	if got := claimNames(t, ctx, s, ids, "c", 10, true); len(got) != 0 {
		t.Fatalf("strict claim = %v, want nothing: h waits behind its dead head, the rest is leased", got)
	}
	if got := claimNames(t, ctx, s, ids, "c", 10, false); !slices.Equal(got, []string{"h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9"}) {
		t.Fatalf("claim after h0 died = %v, want all of h1..h9 in order", got)
	}
}

// A key whose head waits for its retry far from the front keeps its
// successors back even when the window does not reach it.
func TestClaimWalkHonorsBlockers(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	s.claimWindow = func(int) int { return 2 }
	ids := writeKeys(t, ctx, s, pool, "a", "a", "a", "k", "k", "m", "m")

	if got := claimNames(t, ctx, s, ids, "r1", 1, false); !slices.Equal(got, []string{"a0"}) {
		t.Fatalf("claim = %v, want a0", got)
	}
	// Window [a0 leased, a1 held]: walk finds k0 k1 m0 m1; take k0 only.
	if got := claimNames(t, ctx, s, ids, "r2", 1, false); !slices.Equal(got, []string{"k0"}) {
		t.Fatalf("claim = %v, want k0", got)
	}
	if err := s.ScheduleRetry(ctx, outbox.ScheduleRetryParams{Owner: "r2", Retries: []outbox.Retry{{ID: ids["k0"], Error: "later", Delay: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	if got := claimNames(t, ctx, s, ids, "r3", 10, false); !slices.Equal(got, []string{"m0", "m1"}) {
		t.Fatalf("claim = %v, want m0 m1: k waits for k0's retry, a for a0's lease", got)
	}
}

// The walk takes turns: a claim that cannot take every clear key starts the
// next walk after the last key it took, wrapping around.
func TestClaimWalkTakesTurns(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	s.claimWindow = func(int) int { return 1 }
	ids := writeKeys(t, ctx, s, pool, "a", "a", "b", "c", "d")
	if got := claimNames(t, ctx, s, ids, "r", 1, false); !slices.Equal(got, []string{"a0"}) {
		t.Fatalf("claim = %v, want a0", got)
	}
	var order []string
	for range 3 {
		got := claimNames(t, ctx, s, ids, "r", 1, false)
		if len(got) != 1 {
			t.Fatalf("claim = %v, want one record", got)
		}
		order = append(order, got...)
	}
	if !slices.Equal(order, []string{"b0", "c0", "d0"}) {
		t.Fatalf("walk order = %v, want b0 c0 d0", order)
	}
}

func TestNextWalk(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cursor string
		walked []string
		want   string
	}{
		{"", nil, ""},
		{"", []string{"b", "d"}, "d"},
		{"c", []string{"d", "e"}, "e"},
		{"c", []string{"d", "a", "b"}, "b"}, // wrapped: the second lap ended at b
		{"c", []string{"c"}, "c"},
	}
	for _, c := range cases {
		if got := nextWalk(c.cursor, c.walked); got != c.want {
			t.Errorf("nextWalk(%q, %v) = %q, want %q", c.cursor, c.walked, got, c.want)
		}
	}
}

// The database clock is the lease clock: a lease ends Lease after the
// server's now(), whatever the relay's clock says.
func TestLeaseUsesDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	ids := writeKeys(t, ctx, s, pool, "k")
	if got := claimNames(t, ctx, s, ids, "r", 1, false); len(got) != 1 {
		t.Fatal("nothing claimed")
	}
	var left time.Duration
	if err := pool.QueryRow(ctx, "SELECT lease_until - now() FROM "+s.Table()).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left <= 59*time.Minute || left > time.Hour {
		t.Fatalf("the lease ends %v after the database's now(); want an hour", left)
	}
}
