package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// table is one table of the report, rendered for a terminal or Markdown.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

// tables are the report's tables, in reading order.
func (r *Report) tables() []table {
	var out []table
	if t := r.drainTable(); len(t.rows) > 0 {
		out = append(out, t)
	}
	if t := r.latencyTable(); len(t.rows) > 0 {
		out = append(out, t)
	}
	if t := r.enqueueTable(); len(t.rows) > 0 {
		out = append(out, t)
	}
	if t := r.growthTable(); len(t.rows) > 0 {
		out = append(out, t)
	}
	if t := r.idleTable(); len(t.rows) > 0 {
		out = append(out, t)
	}
	if t := r.ceilingTable(); len(t.rows) > 0 {
		out = append(out, t)
	}
	if t := r.targetTable(); len(t.rows) > 0 {
		out = append(out, t)
	}
	return out
}

func (r *Report) drainTable() table {
	t := table{
		title:  fmt.Sprintf("Drain: %s records (%d-byte payloads, %s keys), timed until a consumer has seen them all", number(float64(r.Settings.Backlog)), r.Settings.PayloadBytes, number(float64(r.Settings.Keys))),
		header: []string{"pair", "relay", "events/s (median)", "rounds (min–max)", "× simple relay", "× broker's producer"},
	}
	produce := map[string]*Measure{}
	for _, b := range r.Brokers {
		produce[b.Spec] = b.Produce
	}
	for _, p := range r.Pairs {
		pair := pairName(r, p)
		if p.Simple != nil {
			t.rows = append(t.rows, []string{pair, "simple relay", number(p.Simple.Median), spread(p.Simple), "1.00",
				times(ratio(p.Simple.Median, medianOf(produce[p.Broker])))})
			pair = ""
		}
		for _, d := range p.Drain {
			if !d.PerSec.Valid() {
				continue
			}
			t.rows = append(t.rows, []string{pair, plural(d.Relays, "txoutbox relay"), number(d.PerSec.Median), spread(&d.PerSec),
				times(d.VsSimple), times(d.VsProduce)})
			pair = ""
		}
		if h := p.HotDrain; h != nil {
			t.rows = append(t.rows, []string{pair, fmt.Sprintf("1 txoutbox relay, %d hot keys (%s × the %s-key drain)", r.Settings.HotKeys, times(h.VsAllKeys), number(float64(r.Settings.Keys))),
				number(h.PerSec.Median), spread(&h.PerSec), times(h.VsSimple), "–"})
			pair = ""
		}
		if d := p.TailDrain; d != nil {
			t.rows = append(t.rows, []string{pair, "1 txoutbox relay tailing the WAL (backlog in the slot)", number(d.PerSec.Median), spread(&d.PerSec),
				times(d.VsSimple), times(d.VsProduce)})
		}
		if reason, ok := p.Skipped[ScenarioTail]; ok {
			t.notes = append(t.notes, fmt.Sprintf("%s: not tailed (%s).", pairName(r, p), reason))
		}
		if reason, ok := p.Skipped[ScenarioSimple]; ok {
			t.notes = append(t.notes, fmt.Sprintf("%s: no simple relay (%s).", pairName(r, p), reason))
		}
	}
	t.notes = append(t.notes, fmt.Sprintf("txoutbox relays: batch %d, concurrency %d each, connections of their own; the simple relay: one loop, LIMIT %d, the broker's own client.",
		r.Settings.RelayBatchSize, r.Settings.RelayWorkers, r.Settings.SimpleBatchSize))
	return t
}

func (r *Report) latencyTable() table {
	t := table{
		title: fmt.Sprintf("Latency: commit → broker ack, one event per business transaction, %v s per rate (the first %v s left out)",
			r.Settings.LatencySeconds, r.Settings.WarmupSeconds),
		header: []string{"pair", "rate (ev/s)", "relay", "achieved (ev/s)", "p50 (ms)", "p99 (ms)", "p999 (ms)", "max (ms)", "p99 × simple"},
	}
	for _, p := range r.Pairs {
		pair := pairName(r, p)
		for _, l := range p.Latency {
			relay := "txoutbox"
			switch l.Relay {
			case RelaySimple:
				relay = fmt.Sprintf("simple (%v ms poll)", r.Settings.SimplePollMs)
			case RelayTail:
				relay = "txoutbox tailing the WAL"
			}
			row := []string{pair, number(float64(l.Rate)), relay, number(l.Achieved), msText(l.P50), msText(l.P99), msText(l.P999), msText(l.Max), times(l.VsSimpleP99)}
			if l.Relay == RelayTail && l.LogReadP99 > 0 {
				t.notes = append(t.notes, fmt.Sprintf("%s at %s ev/s, tailing the WAL: commit → read from the slot p50 %s ms, p99 %s ms (the rest is the publish and its wait).",
					pairName(r, p), number(float64(l.Rate)), msText(l.LogReadP50), msText(l.LogReadP99)))
			}
			if l.Lost > 0 {
				row[3] += fmt.Sprintf(" (%d unacked)", l.Lost)
			}
			t.rows = append(t.rows, row)
			pair = ""
		}
	}
	t.notes = append(t.notes, fmt.Sprintf("The txoutbox relay: min poll %v ms, poll %v ms, woken by the store's notifications where it has them (PostgreSQL LISTEN/NOTIFY, SQLite and memory in-process); PostgreSQL writers: --pg-notify %s, NotifyInterval %v ms.",
		r.Settings.RelayMinPollMs, r.Settings.RelayMaxPollMs, r.Settings.PGNotify, r.Settings.PGNotifyIntervalMs))
	return t
}

func (r *Report) enqueueTable() table {
	t := table{
		title:  fmt.Sprintf("Enqueue overhead: a business transaction (UPDATE of a users row, COMMIT) alone and with outbox messages, %d concurrent writers%s", r.Settings.Writers, enqueueRelay(r)),
		header: []string{"store", "transaction", "tx/s (median)", "rounds (min–max)", "time × alone"},
	}
	for _, s := range r.Stores {
		if s.Enqueue == nil {
			continue
		}
		name := s.Kind
		for _, c := range s.Enqueue.Cases {
			t.rows = append(t.rows, []string{name, c.Name, number(c.TxPerSec.Median), spread(&c.TxPerSec), times(c.Ratio)})
			name = ""
		}
	}
	for _, s := range r.Stores {
		if s.TailEnqueue == nil {
			continue
		}
		name := s.Kind + ", tailing the WAL"
		for _, c := range s.TailEnqueue.Cases {
			t.rows = append(t.rows, []string{name, c.Name, number(c.TxPerSec.Median), spread(&c.TxPerSec), times(c.Ratio)})
			name = ""
		}
		t.notes = append(t.notes, s.Kind+", tailing the WAL: pgstore's Config.Tail, each message written with pg_logical_emit_message (no row, no NOTIFY), a relay streaming the replication slot; \"alone\" measured with that relay running, as the other cases.")
	}
	return t
}

func (r *Report) growthTable() table {
	t := table{
		title:  "Table growth: one Read of a batch over every lane and the Settle that marks it delivered, medians",
		header: []string{"store", "retained delivered rows", "read (ms)", "settle (ms)", "read × empty", "settle × empty"},
	}
	for _, s := range r.Stores {
		g := s.Growth
		if g == nil {
			continue
		}
		t.rows = append(t.rows,
			[]string{s.Kind, "0", msText(g.Empty.ReadMs.Median), msText(g.Empty.SettleMs.Median), "1.00", "1.00"},
			[]string{"", number(float64(g.Retained)), msText(g.Full.ReadMs.Median), msText(g.Full.SettleMs.Median), times(g.ReadRatio), times(g.SettleRatio)})
	}
	if len(t.rows) > 0 {
		t.notes = append(t.notes, fmt.Sprintf("Batches of %d from a backlog over %s keys; both outboxes vacuumed and analyzed before timing, rounds alternated.",
			r.Settings.RelayBatchSize, number(float64(r.Settings.Keys))))
	}
	return t
}

func (r *Report) idleTable() table {
	t := table{
		title:  "Idle relay: what one relay with nothing to do asks of the store",
		header: []string{"store", "store calls/s", "reads/s", "lane calls/s", "over (s)"},
	}
	for _, s := range r.Stores {
		if i := s.Idle; i != nil {
			t.rows = append(t.rows, []string{s.Kind, fmt.Sprintf("%.2f", i.CallsPerSec), fmt.Sprintf("%.2f", i.ReadsPerSec),
				fmt.Sprintf("%.2f", i.LanesPerSec), fmt.Sprintf("%.0f", i.Seconds)})
		}
	}
	if len(t.rows) > 0 {
		t.notes = append(t.notes, fmt.Sprintf("One relay holding every lane of an empty outbox, poll %v ms, its lane lease renewed every third of the lease; counted after the relay took its lanes. A call is one round trip on PostgreSQL (its statements sent together); on MariaDB and SQLite a lane heartbeat runs 4–5 statements, a read one.",
			r.Settings.RelayMaxPollMs))
	}
	return t
}

func (r *Report) ceilingTable() table {
	t := table{
		title:  "Ceilings: the store's and the broker's own rates, measured in the same run",
		header: []string{"component", "measure", "per second (median)", "rounds (min–max)"},
	}
	for _, s := range r.Stores {
		if s.RawInsert != nil {
			t.rows = append(t.rows, []string{s.Kind, "raw batched INSERT into a plain table, 1,000 rows per transaction, 4 writers (rows)", number(s.RawInsert.Median), spread(s.RawInsert)})
		}
		if s.Backfill != nil {
			m := "Enqueue, 1,000 messages per transaction, 4 writers (messages)"
			if s.RawInsert != nil {
				m += fmt.Sprintf(", %s× the raw insert", times(ratio(s.Backfill.Median, s.RawInsert.Median)))
			}
			t.rows = append(t.rows, []string{s.Kind, m, number(s.Backfill.Median), spread(s.Backfill)})
		}
	}
	for _, b := range r.Brokers {
		if b.Produce != nil {
			what := "kgo async Produce (records)"
			if b.Kind == "nats" {
				what = "JetStream PublishAsync (messages)"
			}
			t.rows = append(t.rows, []string{b.Spec, what, number(b.Produce.Median), spread(b.Produce)})
		}
	}
	return t
}

func (r *Report) targetTable() table {
	t := table{title: "Targets (issue 15: drain and reads; issue 17: enqueue and latency; issue 18: tailing the WAL)", header: []string{"goal", "where", "measured", "target", "met"}}
	for _, c := range r.Targets {
		met := "yes"
		if !c.Met {
			met = "NO"
		}
		value, limit := fmt.Sprintf("%.2f%s", c.Value, c.Unit), fmt.Sprintf("%.2g%s", c.Limit, c.Unit)
		if c.Unit == "ms" {
			value, limit = msText(c.Value)+" ms", fmt.Sprintf("%g ms", c.Limit)
		}
		t.rows = append(t.rows, []string{c.Goal, c.Where, value, limit, met})
	}
	if r.Settings.Quick && len(t.rows) > 0 {
		t.notes = append(t.notes, "A --quick run: its numbers are not meant to be held against the targets.")
	}
	return t
}

// WriteText writes the report as tables for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "outbox-bench, %s, %.0f s; %s, %d cores, %s", r.Started.Format("2006-01-02 15:04 MST"), r.Seconds, r.Machine.CPU, r.Machine.Cores, r.Machine.GoVersion)
	if l := r.Machine.LoadBefore; len(l) == 3 {
		fmt.Fprintf(&b, "; load %.2f before", l[0])
		if a := r.Machine.LoadAfter; len(a) == 3 {
			fmt.Fprintf(&b, ", %.2f after", a[0])
		}
	}
	b.WriteString("\n")
	for _, c := range append(componentsOf(r.Stores), componentsOfBrokers(r.Brokers)...) {
		fmt.Fprintf(&b, "  %-8s %s; %s", c.Label(), c.Server, c.Client)
		if c.Notes != "" {
			fmt.Fprintf(&b, "; %s", c.Notes)
		}
		b.WriteString("\n")
	}
	for _, t := range r.tables() {
		fmt.Fprintf(&b, "\n%s\n", t.title)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, row := range t.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		_ = tw.Flush()
		for _, n := range t.notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	if len(r.Errors) > 0 {
		b.WriteString("\nFailed measurements:\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func componentsOf(s []StoreReport) []Component {
	out := make([]Component, len(s))
	for i := range s {
		out[i] = s[i].Component
	}
	return out
}

func componentsOfBrokers(b []BrokerReport) []Component {
	out := make([]Component, len(b))
	for i := range b {
		out[i] = b[i].Component
	}
	return out
}

// pairName is "postgres × kfake" or "postgres × kafka": the labels of the
// store and the broker.
func pairName(r *Report, p PairReport) string {
	store, broker := p.Store, p.Broker
	for _, s := range r.Stores {
		if s.Spec == p.Store {
			store = s.Label()
		}
	}
	for _, b := range r.Brokers {
		if b.Spec == p.Broker {
			broker = b.Label()
		}
	}
	return store + " × " + broker
}

func medianOf(m *Measure) float64 {
	if !m.Valid() {
		return 0
	}
	return m.Median
}

// number formats a count or rate with thousands separators.
func number(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	neg := v < 0
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// msText formats milliseconds with the precision that matters.
func msText(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return number(v)
}

// times formats a ratio, or a dash when there is none.
func times(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// spread shows the range of a measure's rounds.
func spread(m *Measure) string {
	if !m.Valid() {
		return "–"
	}
	if len(m.Runs) == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%s–%s (±%.0f%%)", number(m.Min), number(m.Max), 50*m.Spread())
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// enqueueRelay says whether a relay ran beside the enqueue measurement.
func enqueueRelay(r *Report) string {
	for _, s := range r.Stores {
		if s.Enqueue != nil && !s.Enqueue.Relay {
			return ", no relay running"
		}
	}
	return ", a relay running beside them"
}
