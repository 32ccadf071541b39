package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/lanetest"
	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/kafkaserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Relay settings of the end-to-end tests: small batches and short waits,
// so that a run has many rounds and a SIGTERM lands mid-run.
var fastRelay = []string{
	"--batch-size", "20", "--poll-interval", "100ms", "--lease", "20s", "--publish-timeout", "5s",
	"--min-retry-delay", "20ms", "--max-retry-delay", "200ms", "--log-level", "warn",
}

// stopGrace bounds a graceful stop: the publish timeout of fastRelay,
// twice (publishing, then recording the outcome), and a margin for a busy
// machine. It is a deadlock guard, not a speed goal.
const stopGrace = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for wait := 5 * time.Millisecond; !cond(); wait = min(2*wait, 200*time.Millisecond) {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func waitAll(t *testing.T, ctx context.Context, ledger *conformance.Ledger) conformance.Report {
	t.Helper()
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("not every committed message arrived: %v; %s", err, ledger.Report())
	}
	r := ledger.Report()
	if !r.Clean() {
		t.Fatalf("ledger: %s", r)
	}
	return r
}

func relayArgs(st storeFixture, br brokerFixture, brokerURL string, extra ...string) []string {
	args := append([]string{"relay"}, st.args...)
	args = append(args, "--broker", brokerURL)
	args = append(args, fastRelay...)
	return append(args, extra...)
}

// TestRelaySIGTERMPostgresKafka is the operator's whole loop on PostgreSQL
// and a real Kafka: migrate (twice), relay while writers commit, SIGTERM in
// the middle, restart: nothing lost, order kept, no lease left behind.
func TestRelaySIGTERMPostgresKafka(t *testing.T) {
	t.Parallel()
	relaySurvivesSIGTERM(t, postgresOutbox(t), sharedKafkaBroker(t), nil)
}

// TestRelaySIGTERMMySQLNATS is the same loop on MySQL (a mysql:// URL) and
// NATS, configured through the environment and a config file.
func TestRelaySIGTERMMySQLNATS(t *testing.T) {
	t.Parallel()
	relaySurvivesSIGTERM(t, mysqlOutbox(t, true), natsBroker(t), func(st storeFixture, br brokerFixture) ([]string, []string) {
		config := filepath.Join(t.TempDir(), "outbox.yaml")
		text := "batch-size: 1000\nlease: 20s\npoll-interval: 100ms\nmin-retry-delay: 20ms\nmax-retry-delay: 200ms\nlog-level: warn\n"
		if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"OUTBOX_STORE_URL=" + st.storeURL(), "OUTBOX_BROKER_URL=" + br.url,
			"OUTBOX_CONFIG=" + config, "OUTBOX_BATCH_SIZE=20"} // the environment wins over the file
		return env, []string{"relay"}
	})
}

// TestRelaySIGTERMSQLiteKafka runs the loop on an SQLite file shared by the
// relay process and the test's writers, into a real Kafka.
func TestRelaySIGTERMSQLiteKafka(t *testing.T) {
	t.Parallel()
	relaySurvivesSIGTERM(t, sqliteOutbox(t), sharedKafkaBroker(t), nil)
}

// TestRelaySIGTERMMongoNATS runs the loop on MongoDB (FerretDB in CI).
func TestRelaySIGTERMMongoNATS(t *testing.T) {
	t.Parallel()
	relaySurvivesSIGTERM(t, mongoOutbox(t), natsBroker(t), nil)
}

// relaySurvivesSIGTERM: configure, when set, returns the environment and
// arguments of the relay instead of flags.
func relaySurvivesSIGTERM(t *testing.T, st storeFixture, br brokerFixture, configure func(storeFixture, brokerFixture) (env, args []string)) {
	ctx := testContext(t)
	migrate := append([]string{"migrate"}, st.args...)
	for i, want := range []string{"migrated", "already up to date"} { // idempotent, and says so
		r := mustRun(t, ctx, nil, migrate...)
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("migrate run %d printed %q; want it to say %q", i+1, r.stdout, want)
		}
	}
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, br.consumer, ledger, br.topic)

	var env, args []string
	if configure != nil {
		env, args = configure(st, br)
	} else {
		args = relayArgs(st, br, br.url)
	}
	const first, second = 300, 300
	writeMessages(t, ctx, st.outbox, ledger, br.topic, first, 12, "a")
	relay := startOutbox(t, "relay 1", env, args...)
	eventually(t, ctx, "the first relay to deliver some messages", func() bool {
		return ledger.Report().Delivered >= 40 || relay.exited()
	})
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		writeMessages(t, ctx, st.outbox, ledger, br.topic, second, 12, "b")
	}()
	if err := relay.stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	if s := st.stats(t); len(s.Relays) != 0 || s.Retrying != 0 {
		t.Errorf("after a graceful stop, relays %+v are still live and %d messages retrying: the relay must finish its batches, give its lanes back and leave", s.Relays, s.Retrying)
	}
	t.Logf("stopped the first relay after %d deliveries", ledger.Report().Delivered)
	<-writing

	startOutbox(t, "relay 2", env, args...)
	r := waitAll(t, ctx, ledger)
	t.Logf("%s", r)
	if r.Committed != first+second {
		t.Errorf("%d messages committed, want %d", r.Committed, first+second)
	}
	eventually(t, ctx, "nothing pending", func() bool { s := st.stats(t); return s.Pending == 0 })
}

// TestMetricsAndReadiness scrapes a relay: the published counter matches
// the ledger, and /readyz follows the broker going down and coming back
// while /healthz stays up. It is about the CLI's endpoints: kfake.
func TestMetricsAndReadiness(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	st, br := postgresOutbox(t), kfakeBroker(t)
	st.migrate(t)
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, br.consumer, ledger, br.topic)
	addr := freeAddr(t)
	startOutbox(t, "relay", nil, relayArgs(st, br, br.param("delivery_timeout", "1s"), "--metrics-addr", addr, "--health-timeout", "1s")...)

	const n = 200
	writeMessages(t, ctx, st.outbox, ledger, br.topic, n, 10, "m")
	report := waitAll(t, ctx, ledger)
	// The relay counts a batch once its outcomes are recorded, a moment
	// after the consumer may have seen it.
	var metrics map[string]float64
	eventually(t, ctx, "the published counter to catch up", func() bool {
		metrics = scrape(t, ctx, addr)
		return metrics["txoutbox_relay_published_total"] >= float64(report.Delivered)
	})
	published := metrics["txoutbox_relay_published_total"]
	if published > float64(report.Delivered+report.Duplicates) {
		t.Errorf("txoutbox_relay_published_total = %v; the ledger has %d delivered and %d duplicates", published, report.Delivered, report.Duplicates)
	}
	for _, name := range []string{"txoutbox_pending_messages", "txoutbox_dead_letters", "txoutbox_oldest_pending_age_seconds",
		"txoutbox_relay_publish_duration_seconds_count", "txoutbox_relay_publish_lag_seconds_count"} {
		if _, ok := metrics[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if metrics["txoutbox_relay_publish_lag_seconds_count"] < float64(n) {
		t.Errorf("publish lag observed %v times, want at least %d", metrics["txoutbox_relay_publish_lag_seconds_count"], n)
	}
	// The relay alone holds every lane (the stats sum the relays' lanes).
	for name, want := range map[string]float64{
		"txoutbox_lanes": outbox.DefaultLanes, "txoutbox_relay_lanes": outbox.DefaultLanes,
		"txoutbox_relay_lanes_held": outbox.DefaultLanes, "txoutbox_relay_lanes_taken_total": outbox.DefaultLanes,
		"txoutbox_relay_live_relays": 1, "txoutbox_relay_lanes_lost_total": 0,
	} {
		if got, ok := metrics[name]; !ok || got != want {
			t.Errorf("/metrics: %s = %v (present: %v), want %v", name, got, ok, want)
		}
	}
	if metrics["txoutbox_relay_reads_total"] < 1 || metrics["txoutbox_relay_read_messages_total"] < float64(n) {
		t.Errorf("/metrics: %v reads returned %v messages; want at least one read and the %d messages",
			metrics["txoutbox_relay_reads_total"], metrics["txoutbox_relay_read_messages_total"], n)
	}

	waitStatus(t, ctx, addr, "/readyz", http.StatusOK)
	br.stop()
	body := waitStatus(t, ctx, addr, "/readyz", http.StatusServiceUnavailable)
	if !strings.Contains(body, "broker:") || strings.Contains(body, "store:") {
		t.Errorf("/readyz with the broker down says %q; want the broker named, not the store", body)
	}
	waitStatus(t, ctx, addr, "/healthz", http.StatusOK)
	br.start()
	waitStatus(t, ctx, addr, "/readyz", http.StatusOK)
}

// TestRelayStartsWhileBackendsAreDown starts a relay whose store and
// broker do not answer: it stays up, logs, is alive but not ready, and
// delivers everything once they come. The Kafka broker is a real node of
// the test's own, stopped before the relay starts.
func TestRelayStartsWhileBackendsAreDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind   string
		broker func(t *testing.T) brokerFixture
	}{
		{"kafka", func(t *testing.T) brokerFixture {
			return realKafkaBroker(t, kafkaserver.StartCluster(t, kafkaserver.ClusterConfig{Nodes: 1}))
		}},
		{"nats", func(t *testing.T) brokerFixture { return natsBroker(t) }},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			br := tc.broker(t)
			relayWaitsForBackends(t, postgresOutbox(t), br, chaosBrokerURL(br, 1<<20))
		})
	}
}

func relayWaitsForBackends(t *testing.T, st storeFixture, br brokerFixture, brokerURL string) {
	ctx := testContext(t)
	st.migrate(t)
	ledger := conformance.NewLedger()
	writeMessages(t, ctx, st.outbox, ledger, br.topic, 50, 5, "d")

	proxy := newProxy(t, postgresAddr(t, st.storeURL()))
	proxy.setDown(true)
	br.stop()
	addr := freeAddr(t)
	args := relayArgs(st, br, brokerURL, "--metrics-addr", addr, "--health-timeout", "1s", "--log-level", "info")
	args[slices.Index(args, "--store")+1] = proxy.url(st.storeURL())
	relay := startOutbox(t, "relay", nil, args...)

	eventually(t, ctx, "the relay to log that the store is unavailable", func() bool {
		return strings.Contains(relay.out.String(), "store unavailable") || relay.exited()
	})
	waitStatus(t, ctx, addr, "/healthz", http.StatusOK)
	body := waitStatus(t, ctx, addr, "/readyz", http.StatusServiceUnavailable)
	if !strings.Contains(body, "store:") || !strings.Contains(body, "broker:") {
		t.Errorf("/readyz says %q; want both the store and the broker named", body)
	}
	if relay.exited() {
		t.Fatalf("the relay exited while its backends were down:\n%s", relay.out.String())
	}

	proxy.setDown(false)
	eventually(t, ctx, "the relay to log that the broker is unavailable", func() bool {
		return strings.Contains(relay.out.String(), "broker unavailable") || relay.exited()
	})
	br.start()
	conformance.ConsumeInto(t, ctx, br.consumer, ledger, br.topic)
	waitAll(t, ctx, ledger)
	waitStatus(t, ctx, addr, "/readyz", http.StatusOK)
	if err := relay.stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(relay.out.String(), "dead-lettered") {
		t.Errorf("an outage dead-lettered messages:\n%s", relay.out.String())
	}
}

// TestStatusMatchesStats compares `status --json` with the store's Stats,
// with pending, retrying and dead messages and two relays holding half the
// lanes each.
func TestStatusMatchesStats(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	st := postgresOutbox(t)
	st.migrate(t)
	a := lanetest.Hold(t, st.store, "relay-a", lanetest.LowerHalf)
	b := lanetest.Hold(t, st.store, "relay-b", lanetest.UpperHalf)
	// Three keys in relay-a's lanes, three in relay-b's.
	var msgs []outbox.Message
	inA, inB := 0, 0
	for i := 0; inA < 3 || inB < 3; i++ {
		key := fmt.Sprintf("k%d", i)
		switch {
		case a.Holds(key, "") && inA < 3:
			inA++
		case b.Holds(key, "") && inB < 3:
			inB++
		default:
			continue
		}
		msgs = append(msgs, outbox.Message{Topic: "status.test", Key: key, Payload: []byte("x")})
	}
	if err := commitMessages(ctx, st.outbox, msgs); err != nil {
		t.Fatal(err)
	}
	ra, rb := a.Read(10), b.Read(10)
	if len(ra) != 3 || len(rb) != 3 {
		t.Fatalf("relay-a read %d records and relay-b %d, want 3 each", len(ra), len(rb))
	}
	a.Retry("timeout", time.Hour, ra[0])
	b.Dead("too large", rb[0])
	want := st.stats(t)

	r := mustRun(t, ctx, nil, append([]string{"status", "--json"}, st.args...)...)
	var got struct {
		Store         string     `json:"store"`
		Pending       int64      `json:"pending"`
		Retrying      int64      `json:"retrying"`
		Replayed      int64      `json:"replayed"`
		Dead          int64      `json:"dead"`
		OldestPending *time.Time `json:"oldest_pending"`
		LagSeconds    float64    `json:"lag_seconds"`
		Lanes         int        `json:"lanes"`
		Relays        []struct {
			Owner      string    `json:"owner"`
			Lanes      int       `json:"lanes"`
			LeaseUntil time.Time `json:"lease_until"`
		} `json:"relays"`
		Lagging []struct {
			Lane          int       `json:"lane"`
			Owner         string    `json:"owner"`
			Pending       int64     `json:"pending"`
			OldestPending time.Time `json:"oldest_pending"`
			LagSeconds    float64   `json:"lag_seconds"`
		} `json:"lagging"`
		Topics []struct {
			Topic         string     `json:"topic"`
			Pending       int64      `json:"pending"`
			OldestPending *time.Time `json:"oldest_pending"`
			LagSeconds    float64    `json:"lag_seconds"`
			Dead          int64      `json:"dead"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	if got.Pending != want.Pending || got.Retrying != want.Retrying || got.Replayed != want.Replayed || got.Dead != want.Dead || got.Lanes != want.Lanes {
		t.Errorf("status --json says pending %d, retrying %d, replayed %d, dead %d, lanes %d; Stats says %+v",
			got.Pending, got.Retrying, got.Replayed, got.Dead, got.Lanes, want)
	}
	if want.Pending != 5 || want.Retrying != 1 || want.Dead != 1 || want.Lanes != outbox.DefaultLanes || len(want.Relays) != 2 || len(want.Lagging) != 5 {
		t.Errorf("the fixture is not what the test meant: %+v", want)
	}
	if got.OldestPending == nil || !got.OldestPending.Equal(want.OldestPending) || got.LagSeconds <= 0 {
		t.Errorf("oldest pending %v (lag %v), want %v", got.OldestPending, got.LagSeconds, want.OldestPending)
	}
	if len(got.Relays) != len(want.Relays) {
		t.Fatalf("relays %+v, want %+v", got.Relays, want.Relays)
	}
	for i, rl := range want.Relays {
		if got.Relays[i].Owner != rl.Owner || got.Relays[i].Lanes != rl.Lanes || rl.Lanes != outbox.DefaultLanes/2 || !got.Relays[i].LeaseUntil.Equal(rl.Until) {
			t.Errorf("relay %d: %+v, want %+v with half the lanes", i, got.Relays[i], rl)
		}
	}
	if len(got.Lagging) != len(want.Lagging) {
		t.Fatalf("lagging %+v, want %+v", got.Lagging, want.Lagging)
	}
	for i, l := range want.Lagging {
		g := got.Lagging[i]
		if g.Lane != l.Lane || g.Owner != l.Owner || g.Pending != l.Pending || !g.OldestPending.Equal(l.OldestPending) || g.LagSeconds <= 0 {
			t.Errorf("lagging lane %d: %+v, want %+v", i, g, l)
		}
	}
	if len(want.Topics) != 1 || want.Topics[0].Topic != "status.test" || want.Topics[0].Pending != 5 || want.Topics[0].Dead != 1 {
		t.Errorf("the fixture's topics are not what the test meant: %+v", want.Topics)
	}
	if len(got.Topics) != len(want.Topics) {
		t.Fatalf("topics %+v, want %+v", got.Topics, want.Topics)
	}
	for i, ts := range want.Topics {
		g := got.Topics[i]
		if g.Topic != ts.Topic || g.Pending != ts.Pending || g.Dead != ts.Dead || g.OldestPending == nil || !g.OldestPending.Equal(ts.OldestPending) || g.LagSeconds <= 0 {
			t.Errorf("topic %d: %+v, want %+v", i, g, ts)
		}
	}
	if strings.Contains(got.Store, "password") {
		t.Errorf("store %q", got.Store)
	}

	text := strings.Join(strings.Fields(mustRun(t, ctx, nil, append([]string{"status"}, st.args...)...).stdout), " ")
	for _, w := range []string{"pending 5 (retrying 1, replayed 0)", "dead letters 1", "lanes 256 relays",
		"relays 2 (relay-a 128 lanes, relay-b 128 lanes)", "TOPIC PENDING LAG DEAD status.test 5 ", "LAGGING LANE OWNER PENDING OLDEST",
		fmt.Sprintf(" %d %s 1 ", want.Lagging[0].Lane, want.Lagging[0].Owner)} {
		if !strings.Contains(text, w) {
			t.Errorf("status printed\n%s\nwithout %q", text, w)
		}
	}

	// --watch --json prints a document per refresh until SIGTERM.
	watch := startOutbox(t, "status --watch", nil, append([]string{"status", "--watch", "50ms", "--json"}, st.args...)...)
	eventually(t, ctx, "three refreshes", func() bool { return strings.Count(watch.out.String(), "\n") >= 3 || watch.exited() })
	if err := watch.stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(watch.out.String()))
	for sc.Scan() {
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil || doc["pending"] != float64(5) {
			t.Errorf("watch line %q: %v", sc.Text(), err)
		}
	}
}

// TestDeadLetterRoundTrip poisons a relay with a message the broker
// refuses, then repairs it with the CLI alone: list, show, replay once the
// broker accepts it; purge another after confirmation.
//
// The client's limit (max_message_bytes) is kept at the topic's, as the
// kafkapub README asks: the poison message is then refused on its own,
// before it can share a produce request with healthy messages that the
// broker would refuse with it. Raising the limit means raising both, and
// restarting the relay.
//
// It is about the dead-letter commands: kfake.
func TestDeadLetterRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	st, br := postgresOutbox(t), kfakeBroker(t)
	st.migrate(t)
	const small, large = 16 << 10, 1 << 20
	if err := br.setMaxMessageBytes(ctx, small); err != nil {
		t.Fatal(err)
	}
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, br.consumer, ledger, br.topic)
	relay := startOutbox(t, "relay", nil, relayArgs(st, br, br.param("delivery_timeout", "1s", "max_message_bytes", strconv.Itoa(small)))...)

	payload := make([]byte, 32<<10) // over the limit, and not text
	for i := range payload {
		payload[i] = byte(rand.IntN(256))
	}
	poison := []outbox.Message{{Topic: br.topic, Key: "poison", Payload: payload}}
	if err := commitMessages(ctx, st.outbox, poison); err != nil {
		t.Fatal(err)
	}
	writeMessages(t, ctx, st.outbox, ledger, br.topic, 50, 5, "ok")
	waitAll(t, ctx, ledger) // the other keys flowed past it
	dead := func() []map[string]any {
		var out []map[string]any
		r := mustRun(t, ctx, nil, append([]string{"dead", "list", "--json"}, st.args...)...)
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("dead list --json printed %q: %v", r.stdout, err)
		}
		return out
	}
	var list []map[string]any
	eventually(t, ctx, "the poison message to be dead-lettered", func() bool { list = dead(); return len(list) == 1 })
	if list[0]["id"] != poison[0].ID || list[0]["attempts"] != float64(1) || !strings.Contains(fmt.Sprint(list[0]["last_error"]), "large") {
		t.Errorf("dead list: %v; want the poison message, 1 attempt (a permanent refusal) and the reason", list[0])
	}
	table := mustRun(t, ctx, nil, append([]string{"dead", "list"}, st.args...)...).stdout
	if !strings.Contains(table, poison[0].ID) || !strings.Contains(table, "LAST ERROR") {
		t.Errorf("dead list printed\n%s", table)
	}

	var shown struct {
		ID              string `json:"id"`
		Payload         string `json:"payload"`
		PayloadEncoding string `json:"payload_encoding"`
	}
	r := mustRun(t, ctx, nil, append([]string{"dead", "show", poison[0].ID, "--json"}, st.args...)...)
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil {
		t.Fatal(err)
	}
	if decoded, err := base64.StdEncoding.DecodeString(shown.Payload); err != nil || shown.PayloadEncoding != "base64" || string(decoded) != string(payload) {
		t.Errorf("dead show --json: encoding %q, payload decodes to %d bytes (%v); want the binary payload in base64", shown.PayloadEncoding, len(decoded), err)
	}
	text := mustRun(t, ctx, nil, append([]string{"dead", "show", poison[0].ID}, st.args...)...).stdout
	for _, w := range []string{"attempts    1", "last error", "large", "payload     32768 bytes, base64"} {
		if !strings.Contains(text, w) {
			t.Errorf("dead show printed\n%.600s\nwithout %q", text, w)
		}
	}
	if r := runOutbox(t, ctx, nil, "", append([]string{"dead", "show", "0190aaaa-0000-7000-8000-000000000000"}, st.args...)...); r.code != 1 || !strings.Contains(r.stderr, "no dead letter") {
		t.Errorf("dead show of an unknown ID: exit %d, %q", r.code, r.stderr)
	}

	// Fix the broker (topic and client limits, relay restarted), replay,
	// and the message arrives.
	if err := br.setMaxMessageBytes(ctx, large); err != nil {
		t.Fatal(err)
	}
	if err := relay.stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	relay = startOutbox(t, "relay (fixed)", nil, relayArgs(st, br, br.param("delivery_timeout", "1s", "max_message_bytes", strconv.Itoa(large)))...)
	if r := runOutbox(t, ctx, nil, "", append([]string{"dead", "replay"}, st.args...)...); r.code != 2 || !strings.Contains(r.stderr, "--all") {
		t.Errorf("dead replay with nothing named: exit %d, %q", r.code, r.stderr)
	}
	r = mustRun(t, ctx, nil, append([]string{"dead", "replay", poison[0].ID}, st.args...)...)
	if !strings.Contains(r.stdout, "replayed 1 dead letter") {
		t.Errorf("dead replay printed %q", r.stdout)
	}
	ledger.Committed(poison...)
	waitAll(t, ctx, ledger)
	if err := relay.stop(stopGrace); err != nil {
		t.Fatal(err)
	}

	// Another dead letter, purged: refused without a terminal or --yes.
	again := []outbox.Message{{Topic: br.topic, Key: "again", Payload: []byte("purge me")}}
	if err := commitMessages(ctx, st.outbox, again); err != nil {
		t.Fatal(err)
	}
	hand := lanetest.Hold(t, st.store, "test", nil) // the relay left: its lanes are free
	recs := hand.Read(10)
	if len(recs) != 1 || recs[0].ID != again[0].ID {
		t.Fatalf("read %+v, want the new message alone", recs)
	}
	hand.Dead("refused", recs...)
	hand.Leave()
	text = mustRun(t, ctx, nil, append([]string{"dead", "show", again[0].ID}, st.args...)...).stdout
	if !strings.Contains(text, "payload     8 bytes, text\n\npurge me") {
		t.Errorf("dead show of a text payload printed\n%s", text)
	}
	r = runOutbox(t, ctx, nil, "yes\n", append([]string{"dead", "purge", "--all"}, st.args...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "--yes") || len(dead()) != 1 {
		t.Errorf("purge without a terminal or --yes: exit %d, %q; it must refuse and delete nothing", r.code, r.stderr)
	}
	r = mustRun(t, ctx, nil, append([]string{"dead", "purge", "--all", "--yes"}, st.args...)...)
	if !strings.Contains(r.stdout, "purged 1 dead letter") || len(dead()) != 0 || st.stats(t).Dead != 0 {
		t.Errorf("purge --all --yes printed %q", r.stdout)
	}
}

// freeAddr returns a 127.0.0.1 address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// scrape reads the relay's /metrics: the value of each sample without
// labels, and the sum over labels of each sample with them.
func scrape(t *testing.T, ctx context.Context, addr string) map[string]float64 {
	t.Helper()
	_, body := get(t, ctx, addr, "/metrics")
	out := map[string]float64{}
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

func get(t *testing.T, ctx context.Context, addr, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitStatus polls addr+path until it answers with code, and returns the
// body of that answer.
func waitStatus(t *testing.T, ctx context.Context, addr, path string, code int) string {
	t.Helper()
	var body string
	eventually(t, ctx, fmt.Sprintf("%s to answer %d", path, code), func() bool {
		var got int
		got, body = get(t, ctx, addr, path)
		return got == code
	})
	return body
}

// TestTracing runs a relay with an OTLP endpoint in the environment: the
// publish span continues the writer's trace (its trace ID reaches the
// collector), and the message on the broker carries the publish span as
// its parent. It is about the CLI's tracing setup: kfake.
func TestTracing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	st, br := sqliteOutbox(t), kfakeBroker(t)
	st.migrate(t)

	var mu sync.Mutex
	var exported [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			mu.Lock()
			exported = append(exported, body)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(collector.Close)

	ledger := conformance.NewLedger()
	var traceparent string
	consumer := conformance.Broker{Consume: func(ctx context.Context, topics []string, fn func(conformance.Received)) error {
		return br.consumer.Consume(ctx, topics, func(r conformance.Received) {
			mu.Lock()
			traceparent = r.Headers["traceparent"]
			mu.Unlock()
			fn(r)
		})
	}}
	conformance.ConsumeInto(t, ctx, consumer, ledger, br.topic)
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100"}
	relay := startOutbox(t, "relay", env, relayArgs(st, br, br.url)...)

	const traceID = "4bf92f3577b34da6a3ce929e0e6736aa"
	msg := outbox.Message{Topic: br.topic, Key: "traced", Payload: []byte("hello"),
		Headers: map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}}
	msgs := []outbox.Message{msg}
	if err := commitMessages(ctx, st.outbox, msgs); err != nil {
		t.Fatal(err)
	}
	ledger.Committed(msgs...) // with the ID Enqueue gave it
	waitAll(t, ctx, ledger)
	if err := relay.stop(stopGrace); err != nil { // flushes the spans
		t.Fatal(err)
	}
	rawID, _ := hex.DecodeString(traceID)
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, body := range exported {
		found = found || bytes.Contains(body, rawID)
	}
	if !found {
		t.Errorf("the collector received %d exports, none with the writer's trace ID %s", len(exported), traceID)
	}
	if !strings.HasPrefix(traceparent, "00-"+traceID+"-") || strings.Contains(traceparent, "00f067aa0ba902b7") {
		t.Errorf("the message arrived with traceparent %q; want the writer's trace with the publish span as parent", traceparent)
	}
}
