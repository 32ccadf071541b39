package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	natspub "github.com/txoutbox/txoutbox/brokers/nats"
	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/conformance/ledger"
)

// startNATS starts a NATS server with JetStream in this process, on a free
// loopback port, storing in dir; its stream OUTBOX_DEMO holds the demo's
// subject.
func startNATS(ctx context.Context, dir string, log *slog.Logger) (*broker, error) {
	srv, err := server.NewServer(&server.Options{
		ServerName:         "outbox-demo",
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		JetStream:          true,
		StoreDir:           filepath.Join(dir, "nats"),
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		NoLog:              true,
		NoSigs:             true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS server: not ready after 10s")
	}
	b, err := openNATS(ctx, srv.ClientURL(), srv, "OUTBOX_DEMO", demoTopic, log)
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	return b, nil
}

// openNATS creates stream (capturing topic) on the NATS server at raw and
// returns the broker; srv is the embedded server, nil for a real one (whose
// stream is then deleted at the end).
func openNATS(ctx context.Context, raw string, srv *server.Server, stream, topic string, log *slog.Logger) (*broker, error) {
	conn, _, err := natspub.ParseURL(raw)
	if err != nil {
		return nil, invalid("--broker %s: %v; %s", backend.Redact(raw), err, brokerExamples)
	}
	conn.Name = "outbox demo"
	// A publisher of its own gives the demo a connection configured the
	// way the relay's is (credentials, TLS), for the stream and the
	// consumer.
	admin, err := natspub.Connect(ctx, conn, natspub.Config{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("NATS at %s: %w", backend.Redact(raw), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := admin.Ping(pctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("NATS at %s does not answer: %w", backend.Redact(raw), err)
	}
	js := admin.JetStream()
	if _, err := js.CreateStream(pctx, jetstream.StreamConfig{
		Name:       stream,
		Subjects:   []string{topic},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	}); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("create the demo's stream %s on NATS at %s: %w", stream, backend.Redact(raw), err)
	}
	display := fmt.Sprintf("NATS JetStream %s, stream %s (deleted at the end)", backend.Redact(raw), stream)
	if srv != nil {
		display = fmt.Sprintf("NATS %s with JetStream on %s (embedded, temporary), stream %s", server.VERSION, srv.ClientURL(), stream)
	}
	return &broker{
		display:   display,
		url:       raw,
		topic:     topic,
		jetStream: true,
		consume: func(ctx context.Context, fn func(ledger.Received)) error {
			return consumeNATS(ctx, js, stream, fn)
		},
		close: func(ctx context.Context) error {
			var err error
			if srv == nil {
				if derr := js.DeleteStream(ctx, stream); derr != nil {
					err = fmt.Errorf("delete the demo's stream %s: %w", stream, derr)
				}
			}
			_ = admin.Close()
			if srv != nil {
				srv.Shutdown()
				srv.WaitForShutdown()
			}
			return err
		},
	}, nil
}

// consumeNATS reads stream from its first message with an ordered consumer
// until ctx ends.
func consumeNATS(ctx context.Context, js jetstream.JetStream, stream string, fn func(ledger.Received)) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("consume stream %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume stream %s: %w", stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("consume stream %s: %w", stream, err)
		}
		h := msg.Headers()
		fn(ledger.Received{
			ID:      h.Get(natspub.HeaderMsgID),
			Topic:   msg.Subject(),
			Key:     h.Get(natspub.HeaderKey),
			Payload: msg.Data(),
		})
	}
}
