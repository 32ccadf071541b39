package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	outbox "github.com/txoutbox/txoutbox/core"
)

// natsBroker is a NATS server with JetStream: an embedded one, or a real
// one on which each measurement creates a stream and deletes it at its end.
type natsBroker struct {
	spec   string
	url    string
	conn   natspub.Connection
	srv    *server.Server // nil for a real server
	admin  *natspub.Publisher
	js     jetstream.JetStream
	logger *slog.Logger
}

func startNATS(ctx context.Context, dir string, logger *slog.Logger) (*natsBroker, error) {
	store, err := os.MkdirTemp(dir, "nats-")
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "outbox-bench",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   filepath.Join(store, "jetstream"),
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS server: not ready after 10s")
	}
	b, err := openNATS(ctx, srv.ClientURL(), srv, logger)
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	b.spec = "nats (embedded)"
	return b, nil
}

func openNATS(ctx context.Context, spec string, srv *server.Server, logger *slog.Logger) (*natsBroker, error) {
	conn, _, err := natspub.ParseURL(spec)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", redact(spec), err)
	}
	conn.Name = "outbox-bench"
	admin, err := natspub.Connect(ctx, conn, natspub.Config{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("NATS at %s: %w", redact(spec), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := admin.Ping(pctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("NATS at %s does not answer: %w", redact(spec), err)
	}
	return &natsBroker{spec: redact(spec), url: spec, conn: conn, srv: srv, admin: admin, js: admin.JetStream(), logger: logger}, nil
}

func (b *natsBroker) info(ctx context.Context) Component {
	c := Component{Spec: b.spec, Kind: "nats", Client: "nats.go " + moduleVersion("github.com/nats-io/nats.go"),
		Notes: "a file-storage stream per measurement, natspub's defaults (1,024 messages in flight)"}
	if b.srv != nil {
		c.Server = "nats-server " + server.VERSION + " (embedded, in this process)"
		return c
	}
	c.Server = "nats-server " + b.js.Conn().ConnectedServerVersion()
	return c
}

func (b *natsBroker) close() error {
	err := b.admin.Close()
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	return err
}

func (b *natsBroker) newTopic(ctx context.Context, tag string) (topicTarget, error) {
	stream := "OUTBOX_BENCH_" + strings.ToUpper(tag)
	subject := "outbox-bench." + tag
	if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       stream,
		Subjects:   []string{subject},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", stream, err)
	}
	return &natsTopic{b: b, stream: stream, subject: subject}, nil
}

type natsTopic struct {
	b       *natsBroker
	stream  string
	subject string
}

func (t *natsTopic) name() string { return t.subject }

func (t *natsTopic) publisher(ctx context.Context) (outbox.Publisher, func(), error) {
	pub, err := natspub.Connect(ctx, t.b.conn, natspub.Config{Logger: t.b.logger})
	if err != nil {
		return nil, nil, err
	}
	return pub, func() { _ = pub.Close() }, nil
}

func (t *natsTopic) producer(context.Context) (rawProducer, error) {
	nc, err := nats.Connect(t.b.url, nats.Name("outbox-bench producer"))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc) // PublishAsyncMaxPending 4,000, jetstream's default
	if err != nil {
		nc.Close()
		return nil, err
	}
	return natsProducer{nc: nc, js: js}, nil
}

func (t *natsTopic) consume(ctx context.Context, seen func(id string)) (<-chan error, error) {
	cons, err := t.b.js.OrderedConsumer(ctx, t.stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2000))
	if err != nil {
		return nil, err
	}
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		stop := context.AfterFunc(ctx, it.Stop)
		defer stop()
		for {
			msg, err := it.Next()
			if err != nil {
				if ctx.Err() == nil {
					errs <- err
				}
				return
			}
			seen(msg.Headers().Get(natspub.HeaderMsgID))
		}
	}()
	return errs, nil
}

func (t *natsTopic) drop(ctx context.Context) error {
	return t.b.js.DeleteStream(ctx, t.stream)
}

// natsProducer is JetStream's PublishAsync with the window natspub keeps
// (natspub.DefaultMaxInFlight messages sent and not yet acknowledged): a
// message goes out as soon as the oldest outstanding one is acknowledged.
// Without a window, a backlog larger than the client's
// PublishAsyncMaxPending stalls and fails.
type natsProducer struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (p natsProducer) publish(ctx context.Context, msgs []outbox.Message) error {
	const window = natspub.DefaultMaxInFlight
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	acked := 0
	wait := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, m := range msgs {
		if len(futures)-acked >= window {
			if err := wait(futures[acked]); err != nil {
				return err
			}
			acked++
		}
		msg := nats.NewMsg(m.Topic)
		msg.Data = m.Payload
		msg.Header.Set(natspub.HeaderMsgID, m.ID)
		if m.Key != "" {
			msg.Header.Set(natspub.HeaderKey, m.Key)
		}
		f, err := p.js.PublishMsgAsync(msg)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures[acked:] {
		if err := wait(f); err != nil {
			return err
		}
	}
	return nil
}

func (p natsProducer) close() { p.nc.Close() }
