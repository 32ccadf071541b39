package natsserver

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

func streamExists(t *testing.T, url, name string) bool {
	t.Helper()
	var exists bool
	err := withJetStream(url, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		exists = err == nil
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return exists
}

// publish publishes one message with a message ID and reports whether the
// stream saw it as a duplicate.
func publish(t *testing.T, url, subject, id string) (duplicate bool) {
	t.Helper()
	err := withJetStream(url, func(ctx context.Context, js jetstream.JetStream) error {
		ack, err := js.Publish(ctx, subject, []byte("hello"), jetstream.WithMsgID(id))
		if err == nil {
			duplicate = ack.Duplicate
		}
		return err
	})
	if err != nil {
		t.Fatalf("publish to %s: %v", subject, err)
	}
	return duplicate
}

func streamMessages(t *testing.T, url, name string) uint64 {
	t.Helper()
	var n uint64
	err := withJetStream(url, func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		n = info.State.Msgs
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStreamIsCreatedAndDeleted(t *testing.T) {
	t.Parallel()
	url := URL(t) // skips here rather than in the subtest
	var stream string
	t.Run("use", func(t *testing.T) {
		var prefix string
		stream, prefix = Stream(t, url)
		if !streamExists(t, url, stream) {
			t.Fatalf("stream %s does not exist during the test", stream)
		}
		publish(t, url, prefix+".orders.created", "1")
		if !publish(t, url, prefix+".orders.created", "1") {
			t.Error("the second publish with the same message ID was not a duplicate")
		}
		if n := streamMessages(t, url, stream); n != 1 {
			t.Errorf("stream holds %d messages, want 1", n)
		}
	})
	if streamExists(t, url, stream) {
		t.Errorf("stream %s still exists after the test", stream)
	}
}

// TestLocalServer exercises the local-binary path even where
// OUTBOX_TEST_NATS_URL names a server.
func TestLocalServer(t *testing.T) {
	t.Parallel()
	if _, err := findBinary(); err != nil {
		t.Skipf("no local nats-server: %v", err)
	}
	url, proc, err := startLocal()
	if err != nil {
		t.Fatalf("start local nats-server: %v", err)
	}
	if err := ready(url); err != nil {
		t.Fatalf("JetStream on the local server: %v", err)
	}
	if err := proc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if nc, err := nats.Connect(url, nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Errorf("%s still answers after Stop", url)
	}
}

func TestProcessRestartKeepsJetStreamData(t *testing.T) {
	t.Parallel()
	p := Start(t)
	url := p.URL()
	stream, prefix := Stream(t, url)
	publish(t, url, prefix+".a", "msg-1")

	p.Stop()
	p.Stop() // stopping twice is harmless
	if nc, err := nats.Connect(url, nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Fatalf("%s still answers after Stop", url)
	}

	p.Start()
	if p.URL() != url {
		t.Errorf("URL changed across the restart: %s, then %s", url, p.URL())
	}
	if n := streamMessages(t, url, stream); n != 1 {
		t.Errorf("after the restart the stream holds %d messages, want 1", n)
	}
	if !publish(t, url, prefix+".a", "msg-1") {
		t.Error("after the restart a republished message ID was not a duplicate")
	}
}
