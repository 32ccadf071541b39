package outbox

import (
	"log/slog"
	"sync"
	"time"
)

// topicPauses holds back the records of topics that the broker answers for
// but cannot take now ([ErrTopicUnavailable]), while the relay keeps
// publishing the other topics. Each such topic gets its own exponential
// backoff with jitter, and after each pause one batch at a time probes it:
// a probe on Kafka can take the whole delivery timeout, and two workers
// probing the same broken topic would leave no worker for the others.
//
// The state lives in the relay's memory only: a restarted relay finds the
// topic broken again at its first probe, at the cost of one failed publish.
type topicPauses struct {
	log   *slog.Logger
	base  time.Duration
	limit time.Duration

	mu     sync.Mutex
	topics map[string]*topicPause // only topics with a failure streak
}

// topicPause is the failure streak of one topic.
type topicPause struct {
	fails   int
	step    time.Duration // length of the current pause
	resume  time.Time     // end of the current pause
	probing bool          // a batch publishes to the topic after the pause
}

func newTopicPauses(log *slog.Logger, base, limit time.Duration) *topicPauses {
	return &topicPauses{log: log, base: base, limit: limit, topics: make(map[string]*topicPause)}
}

// hold decides, before a batch is published, which of its topics wait.
// waits maps each topic that must not be published now to how long its
// records stay unclaimable; probes lists the topics whose pause is over and
// that this batch probes, to be reported with [topicPauses.finish]. Both
// are nil when no topic has a failure streak, the common case.
func (p *topicPauses) hold(recs []Record, now time.Time) (waits map[string]time.Duration, probes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.topics) == 0 {
		return nil, nil
	}
	for _, rec := range recs {
		t, ok := p.topics[rec.Topic]
		if !ok {
			continue
		}
		if _, seen := waits[rec.Topic]; seen {
			continue
		}
		var wait time.Duration
		switch {
		case now.Before(t.resume):
			wait = t.resume.Sub(now)
		case t.probing:
			if probing(probes, rec.Topic) {
				continue // this batch is the probe
			}
			// Another batch is finding out; its answer comes within
			// one publish timeout, and then this wait is at most a step.
			wait = max(t.step, p.base)
		default:
			t.probing = true
			probes = append(probes, rec.Topic)
			continue
		}
		if waits == nil {
			waits = make(map[string]time.Duration)
		}
		waits[rec.Topic] = wait
	}
	return waits, probes
}

func probing(probes []string, topic string) bool {
	for _, t := range probes {
		if t == topic {
			return true
		}
	}
	return false
}

// failure records that topic could not take a record, and returns how long
// its records wait; probed says whether the failing batch was the topic's
// probe (hold listed the topic in its probes). Failures of one pause step,
// reported by several batches, count once and log once.
func (p *topicPauses) failure(topic string, err error, now time.Time, probed bool) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.topics[topic]
	if t == nil {
		t = &topicPause{}
		p.topics[topic] = t
	}
	// Only the probe's own failure ends the probe. A failure of another
	// batch (one in flight since before the pause) that ended it let the
	// next batch probe again while the probe was still out: two probes for
	// one step, more under load (TestUnavailableTopicWaitsOthersFlowKafka
	// saw 7 publishes for 4 steps).
	if probed {
		t.probing = false
	}
	if now.Before(t.resume) {
		return t.resume.Sub(now) // another batch already counted this step
	}
	t.fails++
	t.step = exponential(t.fails, p.base, p.limit)
	t.resume = now.Add(t.step)
	p.log.Warn("outbox: topic unavailable; holding its messages and publishing the other topics",
		slog.String("topic", topic), slog.Int("failures", t.fails),
		slog.Duration("retry_in", t.step), slog.Any("error", err))
	return t.step
}

// finish ends the probes of a batch. A probed topic that delivered a record
// and had no [ErrTopicUnavailable] in the batch is back: its streak ends. A
// probe that settled nothing either way (its records were held back or
// failed for other reasons) leaves the streak for the next batch to probe.
func (p *topicPauses) finish(probes []string, delivered func(topic string) bool) {
	if len(probes) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, topic := range probes {
		t, ok := p.topics[topic]
		if !ok || !t.probing {
			continue // a failure in this batch (or another) took over
		}
		if delivered(topic) {
			delete(p.topics, topic)
			p.log.Info("outbox: topic is back", slog.String("topic", topic), slog.Int("after_failures", t.fails))
			continue
		}
		t.probing = false
	}
}
