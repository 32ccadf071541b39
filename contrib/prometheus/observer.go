package outboxprom

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	outbox "github.com/txoutbox/txoutbox/core"
)

// ObserverConfig configures an [Observer]. The zero value is ready to use.
type ObserverConfig struct {
	// ConstLabels are added to every metric. Use them to tell apart
	// several relays registered in one process (one Observer each, say
	// {"outbox": "orders"} and {"outbox": "billing"}). Names must match
	// [a-zA-Z_][a-zA-Z0-9_]* and must not be "topic" or "outcome".
	ConstLabels prometheus.Labels

	// TopicLabel, when set, adds a "topic" label to the per-message
	// metrics (published, failed, publish lag) with the value it returns
	// for a message's topic. Nil (the default) adds no topic label: every
	// distinct value is a time series of its own in each of those metrics
	// (times the lag buckets), and topics can be many (a NATS subject per
	// customer or per aggregate). Set it when topics are a small fixed set,
	// func(topic string) string { return topic }, or map them to a few
	// groups (strip the variable tokens of a subject).
	TopicLabel func(topic string) string

	// DurationBuckets are the histogram buckets, in seconds, of the read
	// and publish durations. Default [DefaultDurationBuckets].
	DurationBuckets []float64

	// LagBuckets are the histogram buckets, in seconds, of the
	// commit-to-publish lag. Default [DefaultLagBuckets].
	LagBuckets []float64
}

// Observer records a relay's reads, batches and lane leases as Prometheus
// metrics. It implements [outbox.Observer] (set it as
// [outbox.RelayConfig.Observer]) and [prometheus.Collector] (register it).
// Safe for concurrent use.
//
// One Observer serves one relay; it may also serve several relays of one
// outbox in one process, whose numbers it adds up (the lanes held too; the
// live relays are the outbox's, the same for each).
type Observer struct {
	topic func(string) string

	reads        prometheus.Counter
	readErrors   prometheus.Counter
	readRecords  prometheus.Counter
	readDuration prometheus.Histogram

	laneRounds    prometheus.Counter
	laneErrors    prometheus.Counter
	lanesTaken    prometheus.Counter
	lanesLost     prometheus.Counter
	lanesReleased prometheus.Counter
	lanesHeld     prometheus.Gauge
	liveRelays    prometheus.Gauge

	mu   sync.Mutex     // guards held
	held map[string]int // lanes held by each relay owner reporting here

	// Vectors have a topic label only with TopicLabel; failed has outcome.
	published       *prometheus.CounterVec
	failed          *prometheus.CounterVec
	settleErrors    prometheus.Counter
	publishDuration prometheus.Histogram
	lag             *prometheus.HistogramVec
}

var (
	_ outbox.Observer      = (*Observer)(nil)
	_ prometheus.Collector = (*Observer)(nil)
)

// Values of the outcome label of txoutbox_relay_failed_total.
const (
	OutcomeRetried      = "retried"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeReleased     = "released"
	// OutcomeTopicPaused counts the messages the relay handed back because
	// their topic is paused: the broker answered that it cannot take the
	// topic now ([outbox.ErrTopicUnavailable]), or the topic was already
	// paused when they were queued. Like released, no attempt is counted;
	// they wait out the topic's pause while the other topics flow.
	OutcomeTopicPaused = "topic_paused"
)

// NewObserver returns an Observer; register it with a
// [prometheus.Registerer] to expose its metrics. It reports an invalid
// configuration with an error matching [outbox.ErrInvalidConfig].
func NewObserver(cfg ObserverConfig) (*Observer, error) {
	if err := checkConstLabels("ObserverConfig", cfg.ConstLabels, "topic", "outcome"); err != nil {
		return nil, err
	}
	if cfg.DurationBuckets == nil {
		cfg.DurationBuckets = DefaultDurationBuckets
	}
	if cfg.LagBuckets == nil {
		cfg.LagBuckets = DefaultLagBuckets
	}
	if err := checkBuckets("DurationBuckets", cfg.DurationBuckets); err != nil {
		return nil, err
	}
	if err := checkBuckets("LagBuckets", cfg.LagBuckets); err != nil {
		return nil, err
	}
	var topic []string
	if cfg.TopicLabel != nil {
		topic = []string{"topic"}
	}

	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: name, Help: help, ConstLabels: cfg.ConstLabels,
		})
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: name, Help: help, ConstLabels: cfg.ConstLabels,
		}, labels)
	}
	histogramOpts := func(name, help string, buckets []float64) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "relay", Name: name, Help: help, ConstLabels: cfg.ConstLabels, Buckets: buckets,
		}
	}

	o := &Observer{
		topic: cfg.TopicLabel,
		reads: counter("reads_total",
			"Reads of the relay's lanes, successful or not, including those that found nothing."),
		readErrors: counter("read_errors_total",
			"Reads that failed (store unreachable, ReadTimeout exceeded, ...); the relay backs off and reads again."),
		readRecords: counter("read_messages_total",
			"Messages returned by reads. A read that starts again from the head of the lanes returns messages already queued, which the relay does not queue twice, so this can exceed the messages published."),
		readDuration: prometheus.NewHistogram(histogramOpts("read_duration_seconds",
			"How long reads of the relay's lanes took, successful or not.", cfg.DurationBuckets)),
		laneRounds: counter("lane_rounds_total",
			"Rounds of lane leasing (renewal of the relay's lanes and membership, lanes taken and given back), successful or not."),
		laneErrors: counter("lane_errors_total",
			"Rounds of lane leasing that failed; a relay that cannot renew within its lease stops publishing its lanes."),
		lanesTaken: counter("lanes_taken_total",
			"Lanes the relay took: free ones, or those of a relay whose lease expired."),
		lanesLost: counter("lanes_lost_total",
			"Lanes the relay found taken over by another relay (it renewed them too late); their messages in flight may be published twice."),
		lanesReleased: counter("lanes_released_total",
			"Lanes the relay gave back, beyond its fair share, for another relay to take at once."),
		lanesHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "relay", Name: "lanes_held", ConstLabels: cfg.ConstLabels,
			Help: "Lanes the relay holds, as of its last successful round of lane leasing.",
		}),
		liveRelays: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "relay", Name: "live_relays", ConstLabels: cfg.ConstLabels,
			Help: "Live relays of the outbox (this one included) that the store reported at the last successful round of lane leasing.",
		}),
		held: make(map[string]int),
		published: counterVec("published_total",
			"Messages the broker acknowledged.", topic...),
		failed: counterVec("failed_total",
			"Messages of a batch not delivered, by outcome: retried (after a backoff), dead_lettered, released (not attempted: held behind a failed message of its key, broker unavailable, or relay stopping; back to the relay's queue, no attempt counted), or topic_paused (the broker cannot take their topic now; no attempt counted, the topic waits while others flow).",
			append([]string{"outcome"}, topic...)...),
		settleErrors: counter("settle_errors_total",
			"Batches whose outcomes could not be recorded in the store (after the relay retried while it held their lanes); their messages stay pending and are published again. In tail mode, batches that could not be parked in the table."),
		publishDuration: prometheus.NewHistogram(histogramOpts("publish_duration_seconds",
			"How long the publisher took for one batch.", cfg.DurationBuckets)),
		lag: prometheus.NewHistogramVec(histogramOpts("publish_lag_seconds",
			"Time from enqueue (Message.CreatedAt) to the broker's acknowledgement, per published message.", cfg.LagBuckets), topic),
	}
	if topic == nil {
		// Make every series exist from the start, so that rate() and
		// alerts see a zero instead of nothing.
		o.published.WithLabelValues()
		o.lag.WithLabelValues()
		for _, outcome := range []string{OutcomeRetried, OutcomeDeadLettered, OutcomeReleased, OutcomeTopicPaused} {
			o.failed.WithLabelValues(outcome)
		}
	}
	return o, nil
}

// ObserveRead implements [outbox.Observer].
func (o *Observer) ObserveRead(e outbox.ReadEvent) {
	o.reads.Inc()
	o.readDuration.Observe(e.Duration.Seconds())
	if e.Err != nil {
		o.readErrors.Inc()
		return
	}
	o.readRecords.Add(float64(e.Records))
}

// ObserveLanes implements [outbox.Observer].
func (o *Observer) ObserveLanes(e outbox.LaneEvent) {
	o.laneRounds.Inc()
	// A round that fails part way has taken, lost or given back lanes
	// before its error; count them all the same.
	add := func(c prometheus.Counter, n int) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	add(o.lanesTaken, e.Taken)
	add(o.lanesLost, e.Lost)
	add(o.lanesReleased, e.Released)
	if e.Err != nil {
		o.laneErrors.Inc()
		return // Held and Relays are not known
	}
	o.liveRelays.Set(float64(e.Relays))
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.Held > 0 {
		o.held[e.Owner] = e.Held
	} else {
		delete(o.held, e.Owner) // an owner holding nothing is forgotten
	}
	total := 0
	for _, n := range o.held {
		total += n
	}
	o.lanesHeld.Set(float64(total))
}

// ObserveBatch implements [outbox.Observer].
func (o *Observer) ObserveBatch(e outbox.BatchEvent) {
	if e.PublishDuration > 0 { // zero: nothing in the batch was handed to the publisher
		o.publishDuration.Observe(e.PublishDuration.Seconds())
	}
	if e.SettleErr != nil {
		o.settleErrors.Inc()
	}
	if o.topic == nil {
		o.observeTotals(e)
		return
	}
	for i, rec := range e.Records {
		if i >= len(e.Outcomes) {
			break
		}
		topic := o.topic(rec.Topic)
		switch oc := e.Outcomes[i]; oc.Status {
		case outbox.Delivered:
			o.published.WithLabelValues(topic).Inc()
			o.lag.WithLabelValues(topic).Observe(lagSeconds(e.PublishedAt, rec.CreatedAt))
		default:
			if outcome := outcomeLabel(oc); outcome != "" {
				o.failed.WithLabelValues(outcome, topic).Inc()
			}
		}
	}
}

// observeTotals counts a batch without a topic label: one addition per
// outcome rather than one per message.
func (o *Observer) observeTotals(e outbox.BatchEvent) {
	var delivered, retried, dead, released, paused int
	lag := o.lag.WithLabelValues()
	for i, rec := range e.Records {
		if i >= len(e.Outcomes) {
			break
		}
		switch oc := e.Outcomes[i]; {
		case oc.Status == outbox.Delivered:
			delivered++
			lag.Observe(lagSeconds(e.PublishedAt, rec.CreatedAt))
		case oc.Status == outbox.Retried:
			retried++
		case oc.Status == outbox.DeadLettered:
			dead++
		case topicPaused(oc):
			paused++
		case oc.Status == outbox.Released:
			released++
		}
	}
	add := func(c prometheus.Counter, n int) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	add(o.published.WithLabelValues(), delivered)
	add(o.failed.WithLabelValues(OutcomeRetried), retried)
	add(o.failed.WithLabelValues(OutcomeDeadLettered), dead)
	add(o.failed.WithLabelValues(OutcomeReleased), released)
	add(o.failed.WithLabelValues(OutcomeTopicPaused), paused)
}

func outcomeLabel(oc outbox.Outcome) string {
	switch {
	case oc.Status == outbox.Retried:
		return OutcomeRetried
	case oc.Status == outbox.DeadLettered:
		return OutcomeDeadLettered
	case topicPaused(oc):
		return OutcomeTopicPaused
	case oc.Status == outbox.Released:
		return OutcomeReleased
	}
	return ""
}

// topicPaused reports whether the relay released a record for its topic's
// pause: the broker's answer was [outbox.ErrTopicUnavailable], or the topic
// was paused already (a Released outcome has a RetryIn only then).
func topicPaused(oc outbox.Outcome) bool {
	return oc.Status == outbox.Released && (oc.RetryIn > 0 || errors.Is(oc.Err, outbox.ErrTopicUnavailable))
}

// lagSeconds is the commit-to-publish lag. CreatedAt comes from the
// writer's clock and PublishedAt from the relay's, so skew between hosts
// can make it negative; it is then counted as zero.
func lagSeconds(publishedAt, createdAt time.Time) float64 {
	return max(0, publishedAt.Sub(createdAt).Seconds())
}

// Describe implements [prometheus.Collector].
func (o *Observer) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range o.collectors() {
		c.Describe(ch)
	}
}

// Collect implements [prometheus.Collector].
func (o *Observer) Collect(ch chan<- prometheus.Metric) {
	for _, c := range o.collectors() {
		c.Collect(ch)
	}
}

func (o *Observer) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		o.reads, o.readErrors, o.readRecords, o.readDuration,
		o.laneRounds, o.laneErrors, o.lanesTaken, o.lanesLost, o.lanesReleased, o.lanesHeld, o.liveRelays,
		o.published, o.failed, o.settleErrors, o.publishDuration, o.lag,
	}
}
