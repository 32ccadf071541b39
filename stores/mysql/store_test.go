package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	outbox "github.com/txoutbox/txoutbox/core"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/x") // never used: New does no I/O
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := New(nil, Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("New(nil) = %v, want ErrInvalidConfig", err)
	}
	for _, table := range []string{"1outbox", "out-box", "out box", "outbox`; DROP TABLE x; --", "ünï", strings.Repeat("t", 54)} {
		if _, err := New(db, Config{Table: table}); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("New(Table %q) = %v, want ErrInvalidConfig", table, err)
		}
	}
	if _, err := New(db, Config{Limits: outbox.Limits{MaxPayloadBytes: -1}}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("New(negative MaxPayloadBytes) = %v, want ErrInvalidConfig", err)
	}
	for _, lanes := range []int{-1, outbox.MaxLanes + 1} {
		if _, err := New(db, Config{Lanes: lanes}); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "Lanes") {
			t.Errorf("New(Lanes %d) = %v, want ErrInvalidConfig naming Lanes", lanes, err)
		}
	}
	for _, lanes := range []int{0, 1, outbox.MaxLanes} {
		if _, err := New(db, Config{Lanes: lanes}); err != nil {
			t.Errorf("New(Lanes %d) = %v", lanes, err)
		}
	}
	for _, table := range []string{"", "outbox", "Order", "_events_2024", strings.Repeat("t", 53)} {
		s, err := New(db, Config{Table: table})
		if err != nil {
			t.Errorf("New(Table %q) = %v", table, err)
			continue
		}
		if table == "" && s.Table() != DefaultTable {
			t.Errorf("the default table is %q, want %q", s.Table(), DefaultTable)
		}
	}
}

func TestServerVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		version string
		ok      bool
	}{
		{"8.0.36", true},
		{"8.4.2-log", true},
		{"9.1.0", true},
		{"10.6.18-MariaDB", true},
		{"10.11.6-MariaDB-0+deb12u1", true},
		{"11.4.2-MariaDB-ubu2404", true},
		{"5.5.5-10.6.12-MariaDB", true},
		{"5.7.44", false},
		{"5.7.44-log", false},
		{"10.5.25-MariaDB", false},
		{"10.3.39-MariaDB-0+deb10u1", false},
		{"5.5.5-10.4.1-MariaDB", false},
		{"banana", false},
	}
	for _, tt := range tests {
		info, err := parseServer(tt.version)
		if err == nil {
			err = info.supported()
		}
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: %v, want supported", tt.version, err)
		case !tt.ok && !errors.Is(err, outbox.ErrUnsupported):
			t.Errorf("%s: %v, want ErrUnsupported", tt.version, err)
		case !tt.ok && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: the error %q is not one line", tt.version, err)
		case !tt.ok:
			t.Logf("%s: %v", tt.version, err)
		}
	}
}

func TestMigrateChecksMaxAllowedPacket(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	var packet int
	if err := db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&packet); err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Config{Limits: outbox.Limits{MaxPayloadBytes: packet}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Migrate(ctx)
	if !errors.Is(err, outbox.ErrUnsupported) || !strings.Contains(err.Error(), "max_allowed_packet") {
		t.Fatalf("Migrate with payloads as large as max_allowed_packet = %v, want ErrUnsupported naming max_allowed_packet", err)
	}
}

func TestEnqueueNeedsTransaction(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{})
	if err := s.Enqueue(ctx, nil, outbox.Message{Topic: "t"}); !errors.Is(err, outbox.ErrNoTransaction) {
		t.Errorf("Enqueue(nil tx) = %v, want ErrNoTransaction", err)
	}
	if err := s.Enqueue(ctx, db, outbox.Message{Topic: "t"}); !errors.Is(err, outbox.ErrNoTransaction) {
		t.Errorf("Enqueue(*sql.DB) = %v, want ErrNoTransaction", err)
	}

	// A *sql.Conn in a transaction of its own is accepted.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, end := range []string{"ROLLBACK", "COMMIT"} {
		if _, err := conn.ExecContext(ctx, "START TRANSACTION"); err != nil {
			t.Fatal(err)
		}
		if err := s.Enqueue(ctx, conn, outbox.Message{Topic: "t", Key: end}); err != nil {
			t.Fatalf("Enqueue on a *sql.Conn: %v", err)
		}
		if _, err := conn.ExecContext(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	recs := readOK(t, ctx, s, holdAll(t, ctx, s, "a"), 10)
	if len(recs) != 1 || recs[0].Key != "COMMIT" {
		t.Fatalf("read %+v, want only the committed message", recs)
	}
}

// TestEnqueueSplitsLargeBatches writes more rows, and more bytes, than one
// INSERT carries.
func TestEnqueueSplitsLargeBatches(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, func(c *mysql.Config) { c.InterpolateParams = true }))
	s := newStore(t, db, Config{})
	var msgs []outbox.Message
	for i := range 2500 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: "k", Payload: []byte{byte(i)}})
	}
	for range 5 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: "k", Payload: make([]byte, outbox.DefaultMaxPayloadBytes)})
	}
	if _, _, n := s.insert(msgs, 1); n != insertRows {
		t.Errorf("the first INSERT takes %d rows, want %d", n, insertRows)
	}
	if _, _, n := s.insert(msgs[2500:], 1); n != 1 {
		t.Errorf("the first INSERT of 1 MiB payloads takes %d rows, want 1", n)
	}
	enqueue(t, ctx, db, s, msgs...)
	lanes := holdAll(t, ctx, s, "a")
	var got []outbox.Record
	for {
		recs := readOK(t, ctx, s, lanes, 1000)
		if len(recs) == 0 {
			break
		}
		got = append(got, recs...)
		deliver(t, ctx, s, lanes, recs)
	}
	if len(got) != len(msgs) {
		t.Fatalf("drained %d records, want %d", len(got), len(msgs))
	}
	for i, r := range got {
		if r.ID != msgs[i].ID || len(r.Payload) != len(msgs[i].Payload) {
			t.Fatalf("record %d is %s with %d bytes, want %s with %d, in write order", i, r.ID, len(r.Payload), msgs[i].ID, len(msgs[i].Payload))
		}
	}
}

// TestConnectionSettings runs the store's time-sensitive paths through DSNs
// that differ in every option that touches times and statements.
func TestConnectionSettings(t *testing.T) {
	t.Parallel()
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	tests := []struct {
		name  string
		tweak func(*mysql.Config)
	}{
		{"parseTime loc=Asia/Tokyo time_zone=+09:00 interpolateParams", func(c *mysql.Config) {
			c.ParseTime, c.Loc, c.InterpolateParams = true, tokyo, true
			c.Params["time_zone"] = "'+09:00'"
		}},
		{"no parseTime time_zone=-07:00 prepared statements", nil},
		{"parseTime loc=UTC clientFoundRows", func(c *mysql.Config) {
			c.ParseTime, c.ClientFoundRows = true, true
			c.Params["time_zone"] = "'+00:00'"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			db := openDB(t, testDSN(t, tt.tweak))
			s := newStore(t, db, Config{})
			var dbNow utcTime
			if err := db.QueryRowContext(ctx, "SELECT UTC_TIMESTAMP(6)").Scan(&dbNow); err != nil {
				t.Fatal(err)
			}
			created := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.UTC)
			msgs := enqueue(t, ctx, db, s,
				outbox.Message{Topic: "t", Key: "a", CreatedAt: created},
				outbox.Message{Topic: "t", Key: "b"})

			lanes := holdAll(t, ctx, s, "relay")
			recs := readOK(t, ctx, s, lanes, 10)
			if len(recs) != 2 || !recs[0].CreatedAt.Equal(created) || recs[0].CreatedAt.Location() != time.UTC || !recs[0].NotBefore.IsZero() {
				t.Fatalf("read %+v, want 2 records, the first created at %v UTC, no NotBefore", recs, created)
			}
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !st.OldestPending.Equal(created) || len(st.Relays) != 1 || st.Relays[0].Lanes != outbox.DefaultLanes ||
				st.Relays[0].Until.Sub(dbNow.Time.Add(time.Hour)).Abs() > time.Minute {
				t.Fatalf("Stats = %+v; want oldest %v and one relay holding every lane until about %v", st, created, dbNow.Add(time.Hour))
			}

			// A retry's NotBefore is the database's now plus its delay.
			if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Retries: []outbox.Retry{
				{ID: msgs[0].ID, Error: "now"}, {ID: msgs[1].ID, Error: "later", Delay: time.Hour},
			}}); err != nil {
				t.Fatal(err)
			}
			again := readOK(t, ctx, s, lanes, 10)
			if len(again) != 2 || again[0].NotBefore.Sub(dbNow.Time).Abs() > time.Minute ||
				again[1].NotBefore.Sub(dbNow.Time.Add(time.Hour)).Abs() > time.Minute || again[1].Attempts != 1 || again[1].LastError != "later" {
				t.Fatalf("after retries read %+v, want NotBefore about %v and %v", again, dbNow.Time, dbNow.Time.Add(time.Hour))
			}
			if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Dead: []outbox.Failure{{ID: msgs[0].ID, Error: "dead"}}}); err != nil {
				t.Fatal(err)
			}
			dead, err := s.ListDead(ctx, outbox.ListDeadParams{})
			if err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0].DeadAt.Sub(dbNow.Time).Abs() > time.Minute || !dead[0].CreatedAt.Equal(created) {
				t.Fatalf("dead letters = %+v; want one, dead about %v", dead, dbNow)
			}
		})
	}
}

// TestTablesAreIndependent keeps two outboxes in one database, one of them
// named with a reserved word.
func TestTablesAreIndependent(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	orders := newStore(t, db, Config{Table: "order"})
	users := newStore(t, db, Config{Table: "users_outbox"})
	enqueue(t, ctx, db, orders, keyed("orders", "o1", 2)...)
	enqueue(t, ctx, db, users, keyed("users", "u1", 3)...)
	if got := readOK(t, ctx, orders, holdAll(t, ctx, orders, "a"), 10); len(got) != 2 || got[0].Topic != "orders" {
		t.Errorf("the order outbox has %d records, want its 2", len(got))
	}
	if got := readOK(t, ctx, users, holdAll(t, ctx, users, "a"), 10); len(got) != 3 || got[0].Topic != "users" {
		t.Errorf("the users outbox has %d records, want its 3", len(got))
	}
	var versions int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `order_migrations`").Scan(&versions); err != nil || versions != 1 {
		t.Errorf("order_migrations holds %d versions (%v), want 1", versions, err)
	}
}

// TestLongErrorsAreKept stores errors that do not fit a TEXT column as they
// are: too long, and not UTF-8.
func TestLongErrorsAreKept(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{})
	enqueue(t, ctx, db, s, keyed("t", "k", 1)...)
	lanes := holdAll(t, ctx, s, "a")
	recs := readOK(t, ctx, s, lanes, 1)
	long := "broker says \xff: " + strings.Repeat("é", 40000)
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Retries: []outbox.Retry{{ID: recs[0].ID, Error: long}}}); err != nil {
		t.Fatalf("Settle with a long, invalid error: %v", err)
	}
	again := readOK(t, ctx, s, lanes, 1)
	if len(again) != 1 {
		t.Fatalf("read %d", len(again))
	}
	got := again[0].LastError
	if !utf8.ValidString(got) || len(got) > maxErrorBytes || !strings.HasPrefix(got, "broker says \uFFFD: éé") {
		t.Fatalf("LastError is %d bytes (valid UTF-8: %v) starting %.20q", len(got), utf8.ValidString(got), got)
	}
}

func TestUTCTimeScan(t *testing.T) {
	t.Parallel()
	tokyo := time.FixedZone("JST", 9*3600)
	want := time.Date(2024, 2, 29, 12, 34, 56, 789000000, time.UTC)
	for _, v := range []any{
		"2024-02-29 12:34:56.789000",
		[]byte("2024-02-29 12:34:56.789"),
		time.Date(2024, 2, 29, 12, 34, 56, 789000000, tokyo), // parseTime in loc=Tokyo: same wall clock
	} {
		var u utcTime
		if err := u.Scan(v); err != nil || !u.Valid || !u.Time.Equal(want) {
			t.Errorf("Scan(%v) = %v %v %v, want %v", v, u.Time, u.Valid, err, want)
		}
	}
	var u utcTime
	if err := u.Scan(nil); err != nil || u.Valid {
		t.Errorf("Scan(nil) = %v %v", u.Valid, err)
	}
}

func TestMigrationsAreWellFormed(t *testing.T) {
	t.Parallel()
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range all {
		if m.version != i+1 {
			t.Errorf("migration %s has version %d, want %d (no gaps, no duplicates)", m.name, m.version, i+1)
		}
		if len(m.statements) == 0 {
			t.Errorf("migration %s has no statement", m.name)
		}
		for _, stmt := range m.statements {
			if strings.Contains(stmt, ";") {
				t.Errorf("migration %s: a statement holds a semicolon; split it: %q", m.name, stmt)
			}
		}
	}
}

// TestFirstMigrationsRace runs several first migrations of one outbox at
// once, as several instances of a service starting together do.
func TestFirstMigrationsRace(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	errs := make(chan error, 6)
	for range cap(errs) {
		go func() {
			s, err := New(db, Config{Table: "events"})
			if err == nil {
				err = s.Migrate(ctx)
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("Migrate: %v", err)
		}
	}
	var versions, lanes int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `events_migrations`").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `events_lanes`").Scan(&lanes); err != nil {
		t.Fatal(err)
	}
	if all, _ := migrations(); versions != len(all) || lanes != outbox.DefaultLanes {
		t.Fatalf("after concurrent first migrations: %d versions recorded (want %d), %d lanes (want %d)", versions, len(all), lanes, outbox.DefaultLanes)
	}
}

// TestSettleDeletesUnlessRetained: a delivered settle deletes its records;
// with Retain it marks them delivered, for Cleanup to delete.
func TestSettleDeletesUnlessRetained(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := openDB(t, testDSN(t, nil))
	s := newStore(t, db, Config{Lanes: 4})
	enqueue(t, ctx, db, s, keyed("t", "k", 4)...)
	lanes := holdAll(t, ctx, s, "a")
	recs := readOK(t, ctx, s, lanes, 10)
	count := func(where string) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table+" WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[0].ID},
		Retries: []outbox.Retry{{ID: recs[2].ID, Error: "boom"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: []string{recs[1].ID}, Retain: true}); err != nil {
		t.Fatal(err)
	}
	if n := count("id = '" + recs[0].ID + "'"); n != 0 {
		t.Errorf("a record delivered without Retain is still in the table")
	}
	if n := count("id = '" + recs[1].ID + "' AND state = 2"); n != 1 {
		t.Errorf("a record delivered with Retain is not kept as delivered")
	}
	if n := count("id = '" + recs[2].ID + "' AND state = 0 AND attempts = 1 AND last_error = 'boom'"); n != 1 {
		t.Errorf("the retry settled beside the delete was not recorded")
	}
	if n := count("1"); n != 3 {
		t.Errorf("the table holds %d records, want 3", n)
	}
	time.Sleep(10 * time.Millisecond)
	n, err := s.Cleanup(ctx, outbox.CleanupParams{OlderThan: time.Millisecond, Limit: 10})
	if err != nil || n != 1 || count("1") != 2 {
		t.Errorf("Cleanup deleted %d records (%v); want the retained one", n, err)
	}
}
