package kafkapub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Publisher produces outbox messages to Kafka through a franz-go client. It
// implements [outbox.Publisher] and [outbox.Pinger]. Safe for concurrent
// use.
type Publisher struct {
	client *kgo.Client
	owned  bool // Close closes the client
	topic  func(outbox.Message) string
	ce     *cloudEvents // nil unless Config.CloudEvents is on
	closed atomic.Bool

	// For records whose batch a broker refused as too large (see aloneFor).
	limits  topicLimits
	aloneMu sync.Mutex
	alone   *kgo.Client // made on first need; closed by Close
}

var (
	_ outbox.Publisher = (*Publisher)(nil)
	_ outbox.Pinger    = (*Publisher)(nil)
)

// New returns a publisher that produces through client, which stays yours:
// [Publisher.Close] does not close it. The client must require acks from
// all in-sync replicas (kgo's default), flush on its own (no
// kgo.ManualFlushing) and not be transactional; New reports an error
// matching [outbox.ErrInvalidConfig] otherwise. Keep kgo's default
// partitioner, or another that sends every record of a key to one
// partition, or consumers will not see a key's messages in order. Keep it
// idempotent (kgo's default) too: without idempotence order still holds,
// but kgo's own retries may write a record twice.
//
// [DialConfig.ClientOptions] lists the options that suit a relay; with
// kgo's defaults instead, a missing topic or an unreachable cluster can
// take the whole publish deadline before it is reported.
func New(client *kgo.Client, cfg Config) (*Publisher, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: kafkapub: New needs a *kgo.Client (or use Dial)", outbox.ErrInvalidConfig)
	}
	if err := checkClient(client); err != nil {
		return nil, err
	}
	ce, err := newCloudEvents(cfg.CloudEvents)
	if err != nil {
		return nil, err
	}
	topic := cfg.Topic
	if topic == nil {
		topic = func(m outbox.Message) string { return m.Topic }
	}
	return &Publisher{client: client, topic: topic, ce: ce}, nil
}

// Dial builds a client from cfg (see [DialConfig.ClientOptions]) and
// returns a publisher over it that owns it: [Publisher.Close] closes it.
// Dial does not contact the brokers, so it succeeds while they are down;
// the relay retries until they answer. Use [Publisher.Ping] to check them.
func Dial(cfg DialConfig) (*Publisher, error) {
	opts, err := cfg.ClientOptions()
	if err != nil {
		return nil, err
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: kafkapub: %w", outbox.ErrInvalidConfig, err)
	}
	p, err := New(client, cfg.Config)
	if err != nil {
		client.Close()
		return nil, err
	}
	p.owned = true
	return p, nil
}

// checkClient refuses clients whose settings break the publisher's promises.
func checkClient(client *kgo.Client) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: kafkapub: the client %s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if acks, ok := client.OptValue(kgo.RequiredAcks).(kgo.Acks); ok && acks != kgo.AllISRAcks() {
		return bad("does not wait for all in-sync replicas; use kgo.RequiredAcks(kgo.AllISRAcks()), kgo's default, so that a record acknowledged is a record kept")
	}
	if manual, ok := client.OptValue(kgo.ManualFlushing).(bool); ok && manual {
		return bad("uses kgo.ManualFlushing; the publisher needs a client that sends records on its own")
	}
	if vs := client.OptValues(kgo.TransactionalID); len(vs) == 2 && vs[1] == true {
		return bad("is transactional (kgo.TransactionalID); give the publisher a client of its own without it")
	}
	return nil
}

// Client returns the franz-go client the publisher produces through.
func (p *Publisher) Client() *kgo.Client { return p.client }

// Close closes the client if [Dial] built it; a client given to [New] stays
// open. Publish calls after Close fail with [ErrClosed]. Stop the relay
// first: records still in flight are failed. Close is idempotent.
func (p *Publisher) Close() {
	if p.closed.Swap(true) {
		return
	}
	p.aloneMu.Lock()
	if p.alone != nil {
		p.alone.Close()
	}
	p.aloneMu.Unlock()
	if p.owned {
		p.client.Close()
	}
}

// Ping reports whether a broker answers, with an error matching
// [outbox.ErrUnavailable] when none does, and also
// [outbox.ErrAccessDenied] when the brokers refuse the client's
// credentials.
func (p *Publisher) Ping(ctx context.Context) error {
	if p.closed.Load() {
		return fmt.Errorf("%w: %w", outbox.ErrUnavailable, ErrClosed)
	}
	if err := p.client.Ping(ctx); err != nil {
		if refused(err) {
			return fmt.Errorf("%w: %w: kafkapub: the brokers refuse the client's credentials: %w", outbox.ErrUnavailable, outbox.ErrAccessDenied, err)
		}
		return fmt.Errorf("%w: kafkapub: no broker answers: %w", outbox.ErrUnavailable, err)
	}
	return nil
}

// Publish implements [outbox.Publisher]. It produces msgs as Kafka records
// (see the package documentation for the record layout) and returns once
// every record is acknowledged by all in-sync replicas or has failed, or
// when ctx ends.
//
// Messages without a key are produced at once. Messages of one key are
// produced one after the other: the next once the broker acknowledged the
// previous. After a failure the key's later messages in msgs are not
// produced, and their results match [outbox.ErrNotAttempted]; see the
// package documentation for why it waits. Messages of many keys are
// produced together, so a batch takes about as many round trips as its
// busiest key has messages.
//
// Results are classified for the relay (see the package documentation).
// When ctx ends, the messages produced but not answered get an error (one
// matching [outbox.ErrUnavailable] when the deadline passed; they may still
// reach the broker), and those not produced yet one matching
// [outbox.ErrNotAttempted].
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if len(msgs) == 0 {
		return []error{}
	}
	if p.closed.Load() {
		results := make([]error, len(msgs))
		for i := range results {
			results[i] = fmt.Errorf("%w: %w", outbox.ErrUnavailable, ErrClosed)
		}
		return results
	}
	extra := 0
	if p.ce != nil {
		extra = ceHeaders
	}
	b := newBatch(msgs, extra)
	results := b.run(ctx, p)
	p.explainStalls(ctx, results)
	return results
}

// explainStalls tells, for the records the client gave up on without a
// broker's answer ([stalled]), whether the cluster is reachable: a ping of
// the brokers, bounded by ctx and two seconds, tells it. When a broker
// answers, the records' topics cannot take records now
// ([outbox.ErrTopicUnavailable]: the relay holds back those topics and
// goes on with the others); when none answers, the ping's error is the
// reason the cluster is down ([outbox.ErrUnavailable]), which kgo does not
// always give on the records (refused credentials, for one).
func (p *Publisher) explainStalls(ctx context.Context, results []error) {
	var pingErr error
	pinged := false
	for _, err := range results {
		st, ok := errors.AsType[*stalled](err)
		if !ok {
			continue
		}
		if !pinged {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			pingErr = p.client.Ping(pctx)
			cancel()
			pinged = true
		}
		st.reachable, st.pingErr = pingErr == nil, pingErr
	}
}

// unanswered is the result of a record produced but not answered when the
// context of Publish ended: it may still reach the broker.
func unanswered(topic string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: kafkapub: topic %q: no acknowledgement before the publish deadline (the record may still be written): %w", outbox.ErrUnavailable, topic, err)
	}
	return fmt.Errorf("kafkapub: topic %q: publish cancelled before an acknowledgement (the record may still be written): %w", topic, err)
}
