package natspub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	outbox "github.com/txoutbox/txoutbox/core"
)

// DefaultDuplicateWindow is the duplicate window of the streams
// [DefaultStreamFor] describes: long enough for the relay's defaults (a
// 60s lease, retries backing off to 5 minutes) to republish a message
// whose acknowledgement was lost while the stream still remembers its ID.
const DefaultDuplicateWindow = 10 * time.Minute

// streamLookupTimeout bounds the stream look-ups and creations of a Publish
// call whose context has no earlier deadline.
const streamLookupTimeout = 5 * time.Second

// DefaultStreamFor is the stream [Config.CreateStreams] creates when
// [Config.StreamFor] is nil: it is named after the subject's first token
// and captures that token and every subject under it ("orders" and
// "orders.>" for "orders.created"), with file storage, no limits, and a
// [DefaultDuplicateWindow] duplicate window. Characters a stream name
// cannot hold become underscores.
func DefaultStreamFor(subject string) jetstream.StreamConfig {
	token, _, _ := strings.Cut(subject, ".")
	name := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`.*>/\`, r) {
			return '_'
		}
		return r
	}, token)
	return jetstream.StreamConfig{
		Name:        name,
		Description: "created by txoutbox natspub for " + token + " and " + token + ".>",
		Subjects:    []string{token, token + ".>"},
		Storage:     jetstream.FileStorage,
		Duplicates:  DefaultDuplicateWindow,
	}
}

// findStream looks for the stream that captures subject after a publish on
// it went unanswered. It returns nil when a stream captures it now (it
// appeared since, or CreateStreams just created it), and otherwise the
// error to report for the message.
func (p *Publisher) findStream(ctx context.Context, subject string) error {
	ctx, cancel := context.WithTimeout(ctx, streamLookupTimeout)
	defer cancel()
	_, err := p.js.StreamNameBySubject(ctx, subject)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("natspub: nothing answered the message on %q, and looking up its stream failed: %w: %w", subject, outbox.ErrUnavailable, err)
	case !p.cfg.CreateStreams:
		return noStreamError(subject)
	}
	return p.createStream(ctx, subject)
}

// createStream creates the stream StreamFor describes for subject.
func (p *Publisher) createStream(ctx context.Context, subject string) error {
	p.streamMu.Lock()
	defer p.streamMu.Unlock()
	// Another call may have created it while this one waited.
	if _, err := p.js.StreamNameBySubject(ctx, subject); err == nil {
		return nil
	}
	cfg := p.cfg.StreamFor(subject)
	_, err := p.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("%w %q: a stream named %q exists but does not capture it; add the subject to that stream, or return another stream from Config.StreamFor",
			ErrNoStream, subject, cfg.Name)
	}
	if err != nil {
		return fmt.Errorf("%w %q: creating stream %q for it failed: %w", ErrNoStream, subject, cfg.Name, err)
	}
	p.cfg.Logger.Info("natspub: created a JetStream stream for a subject no stream captured",
		slog.String("stream", cfg.Name), slog.String("subject", subject), slog.Any("subjects", cfg.Subjects),
		slog.Duration("duplicates", cfg.Duplicates))
	return nil
}
