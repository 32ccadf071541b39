package uitest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/conformance/servers"
	outbox "github.com/txoutbox/txoutbox/core"
)

// Relay settings: quick retries, so that a message without a stream is
// dead-lettered within a second or two; delivered messages retained, so
// that "where is my event?" finds them; strict order, so that a dead
// letter holds the later messages of its key back.
var relayFlags = []string{
	"--poll-interval", "100ms", "--max-attempts", "2", "--min-retry-delay", "50ms", "--max-retry-delay", "100ms",
	"--retention", "1h", "--strict-order", "--log-level", "info",
}

// TestConsoleAsAnOperatorUsesIt is the operator's walk through the console,
// in Chromium, on PostgreSQL and NATS:
//
//  1. outbox ui, no relay running: a burst of messages shows on the
//     overview, overall and in its topic's row, and the lag rises without
//     a reload;
//  2. outbox relay --ui-addr starts: the first console shows the lag fall
//     to zero, the relay's console shows its deliveries per topic;
//  3. a message on a subject without a stream is dead-lettered: it shows
//     among the dead letters, with its error, and in its topic's row; "where is my event?" says
//     that the next message of its key waits behind it; a read-only
//     console offers no replay;
//  4. the stream is created, the dead letter replayed through the
//     confirmation, which says it holds the next message back; both
//     arrive, and "where is my event?" finds the first delivered.
func TestConsoleAsAnOperatorUsesIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	bctx := browser(t, ctx)
	ob := newOutbox(t, ctx)
	topic := ob.prefix + ".orders"

	// 1. A console on its own, and a burst with no relay to deliver it.
	standalone := command(t, ctx, append([]string{"ui", "--addr", "127.0.0.1:0"}, ob.storeArgs()...)...)
	const burst = 3000
	ob.write(t, ctx, messages(topic, "order", burst, 100))
	if err := chromedp.Do(bctx, chromedp.Navigate(standalone)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, bctx, "the burst on the overview", "#pending", func(s string) bool { return s == "3000" })
	waitText(t, ctx, bctx, "the burst's topic on the overview", "#topics tbody tr:first-child td:first-child", func(s string) bool { return s == topic })
	waitText(t, ctx, bctx, "the burst's topic pending", "#topics tbody tr:first-child td:nth-child(2)", func(s string) bool { return s == "3000" })
	first := number(attr(t, bctx, "#lag", "data-seconds"))
	// The page redraws itself: the lag grows by the time that passes.
	waitText(t, ctx, bctx, "the lag rising", "#lag", func(s string) bool { return number(s) >= first+2 })
	waitText(t, ctx, bctx, "the warning that no relay runs", "#warnings", func(s string) bool {
		return strings.Contains(s, "No live relay: 3000 pending messages")
	})

	// 2. The relay starts, with its own console.
	relayed := command(t, ctx, append(append([]string{"relay", "--broker", ob.natsURL, "--ui-addr", "127.0.0.1:0"}, ob.storeArgs()...), relayFlags...)...)
	waitText(t, ctx, bctx, "the backlog drained", "#pending", func(s string) bool { return s == "0" })
	waitText(t, ctx, bctx, "the lag back to zero", "#lag", func(s string) bool { return number(s) == 0 })
	waitText(t, ctx, bctx, "the relay listed", "#relays tbody", func(s string) bool { return strings.Contains(s, "16") })
	if n := attr(t, bctx, "#chart-lag", "data-points"); number(n) < 3 {
		t.Errorf("the lag chart has %s points; want the rise and the fall", n)
	}
	shoot(t, bctx, "overview")

	// 3. A poison message: its subject has no stream.
	poisonSubject := "poison-" + servers.Name(t, "s") + ".orders"
	poison := outbox.Message{Topic: poisonSubject, Key: "order-7", Payload: []byte(`{"order":7,"note":"poison"}`), Headers: map[string]string{"tenant": "acme"}}
	ob.write(t, ctx, []outbox.Message{poison})
	waitDead(t, ctx, ob)
	next := outbox.Message{ID: outbox.NewID(), Topic: topic, Key: "order-7", Payload: []byte(`{"order":7,"note":"after the poison"}`)}
	ob.write(t, ctx, []outbox.Message{next})
	if err := chromedp.Do(bctx, chromedp.Navigate(relayed)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, bctx, "the relay's deliveries per topic", "#topics tbody", func(s string) bool {
		return strings.Contains(s, topic) && strings.Contains(s, "3000")
	})
	waitText(t, ctx, bctx, "the dead letter counted", "#dead", func(s string) bool { return s == "1" })
	waitText(t, ctx, bctx, "the next message held back", "#pending", func(s string) bool { return s == "1" })
	// Per topic: the held-back message pending in the burst's topic, the
	// dead letter in the poison's.
	waitText(t, ctx, bctx, "the held-back message pending in its topic", "#topics tbody tr:first-child", func(s string) bool {
		f := strings.Fields(s)
		return len(f) > 1 && f[0] == topic && f[1] == "1"
	})
	waitText(t, ctx, bctx, "the dead letter in its topic", "#topics tbody tr:nth-child(2)", func(s string) bool {
		f := strings.Fields(s)
		return len(f) > 3 && f[0] == poisonSubject && f[3] == "1"
	})
	shoot(t, bctx, "overview-relay")

	// Where is the next message of the key? Behind the dead letter.
	if err := chromedp.Do(bctx, chromedp.Navigate(relayed+"find?q=order-7")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, bctx, "the key's records", "#key-records tbody", func(s string) bool {
		return strings.Contains(s, "dead") && strings.Contains(s, "If the relay runs with --strict-order, this one waits")
	})
	shoot(t, bctx, "where-is-my-event")
	if err := chromedp.Do(bctx, chromedp.Navigate(relayed+"dead")); err != nil {
		t.Fatal(err)
	}
	rows := waitText(t, ctx, bctx, "the dead letter listed", "#dead-letters tbody", func(s string) bool { return strings.Contains(s, poisonSubject) })
	if !strings.Contains(rows, "no stream") && !strings.Contains(rows, "stream") {
		t.Errorf("the dead letter's row says %q; want its error, naming the missing stream", rows)
	}
	shoot(t, bctx, "dead-letters")
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#dead-letters tbody a"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, bctx, "the payload as text", "#payload", func(s string) bool { return strings.Contains(s, `"note":"poison"`) })
	waitText(t, ctx, bctx, "the headers", "#headers", func(s string) bool { return strings.Contains(s, "tenant") && strings.Contains(s, "acme") })
	letterURL, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	poisonID := letterURL[strings.LastIndex(letterURL, "/")+1:]
	shoot(t, bctx, "dead-letter")

	// A read-only console shows the dead letter and offers no replay.
	readOnly := command(t, ctx, append([]string{"ui", "--addr", "127.0.0.1:0", "--read-only"}, ob.storeArgs()...)...)
	for _, page := range []string{"dead", "dead/" + poisonID} {
		if err := chromedp.Do(bctx, chromedp.Navigate(readOnly+page)); err != nil {
			t.Fatal(err)
		}
		waitText(t, ctx, bctx, "the read-only badge", "#read-only", func(s string) bool { return s == "read-only" })
		if n := count(t, bctx, `button[value="replay"], button[value="purge"], input[type=checkbox]`); n != 0 {
			t.Errorf("read-only /%s has %d replay or purge buttons or checkboxes; want none", page, n)
		}
		html, err := chromedp.Run(bctx, chromedp.OuterHTML(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(html, poisonID) || strings.Contains(html, "Replay") {
			t.Errorf("read-only /%s: want the dead letter %s and no Replay", page, poisonID)
		}
	}

	// 4. Fix the subject (give it a stream), replay, and see it arrive.
	stream := servers.Name(t, "fixed")
	withJetStream(t, ctx, ob.natsURL, func(js jetstream.JetStream) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{poisonSubject}})
		return err
	})
	t.Cleanup(func() {
		withJetStream(t, context.Background(), ob.natsURL, func(js jetstream.JetStream) error { return js.DeleteStream(context.Background(), stream) })
	})
	if err := chromedp.Do(bctx, chromedp.Navigate(relayed+"dead/"+poisonID), chromedp.Click(chromedp.CSS("#replay"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, bctx, "what replay holds back", "#holds-back", func(s string) bool {
		return strings.Contains(s, "Replay holds back 1 later pending message(s) of 1 key(s)")
	})
	shoot(t, bctx, "replay-confirmation")
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#confirm"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, bctx, "the replay reported", "#message", func(s string) bool { return s == "Replayed 1 of 1 dead letter(s)." })
	if got := consumeOne(t, ctx, ob.natsURL, stream, poisonID); got != poisonSubject {
		t.Errorf("the replayed message arrived on %q; want %q", got, poisonSubject)
	}
	if got := consumeOne(t, ctx, ob.natsURL, ob.stream, next.ID); got != topic {
		t.Errorf("the message behind it arrived on %q; want %q", got, topic)
	}

	// Where is it now? Delivered (retained by --retention).
	for i, step := range []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(relayed + "find"),
		chromedp.SetValue(chromedp.CSS(`input[name="q"]`), poisonID),
		chromedp.Click(chromedp.CSS(`form.search button`)),
	} {
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		err := chromedp.Do(sctx, step)
		cancel()
		if err != nil {
			t.Fatalf("find step %d: %v", i, err)
		}
	}
	waitText(t, ctx, bctx, "the message found delivered", "#state", func(s string) bool { return s == "delivered" })
}

// waitDead waits until the outbox has a dead letter.
func waitDead(t *testing.T, ctx context.Context, ob *outboxFixture) {
	t.Helper()
	for {
		list, err := ob.store.ListDead(ctx, outbox.ListDeadParams{Limit: 1})
		if err == nil && len(list) == 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no dead letter before the deadline (last error %v)", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
