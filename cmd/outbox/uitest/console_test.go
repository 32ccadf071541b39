package uitest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/cmd/outbox/cli"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/natsserver"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

// chromium finds the browser, or skips (fails under OUTBOX_TEST_REQUIRE).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(servers.EnvChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium: no browser: set " + servers.EnvChromium + " or run scripts/services start chromium (Debian's chromium package)"
	if servers.Required(servers.Chromium) {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless Chromium for t and returns its context.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// outboxFixture is a PostgreSQL outbox of t's own and a NATS stream.
type outboxFixture struct {
	storeURL, schema string
	pool             *pgxpool.Pool
	store            *pgstore.Store
	natsURL          string
	stream, prefix   string // subjects prefix.> go to stream
}

func newOutbox(t *testing.T, ctx context.Context) *outboxFixture {
	t.Helper()
	f := &outboxFixture{}
	f.storeURL, f.schema = pgserver.Schema(t)
	pool, err := pgxpool.New(ctx, f.storeURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f.pool = pool
	if f.store, err = pgstore.New(pool, pgstore.Config{Schema: f.schema, Lanes: 16}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f.natsURL = natsserver.URL(t)
	f.stream, f.prefix = natsserver.Stream(t, f.natsURL)
	return f
}

// write commits msgs in transactions of at most 500.
func (f *outboxFixture) write(t *testing.T, ctx context.Context, msgs []outbox.Message) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		tx, err := f.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.store.Enqueue(ctx, tx, msgs[:n]...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// command runs an outbox command in this process until the test ends, and
// returns the console's URL from its log.
func command(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := cli.Main(ctx, args, strings.NewReader(""), io.Discard, pw)
		pw.Close()
		done <- code
	}()
	urls := make(chan string, 1)
	var logMu sync.Mutex
	var logTail []string
	go func() {
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`url=(http://\S+/)`)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logTail = append(logTail[max(0, len(logTail)-50):], line)
			logMu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				urls <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				logMu.Lock()
				t.Errorf("outbox %s exited %d; its log ends:\n%s", args[0], code, strings.Join(logTail, "\n"))
				logMu.Unlock()
			}
		case <-time.After(time.Minute):
			t.Errorf("outbox %s did not stop within a minute", args[0])
		}
	})
	select {
	case u := <-urls:
		return u
	case code := <-done:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("outbox %s exited %d before serving the console:\n%s", args[0], code, strings.Join(logTail, "\n"))
	case <-ctx.Done():
		t.Fatalf("outbox %s: no console before the deadline", args[0])
	}
	return ""
}

func (f *outboxFixture) storeArgs() []string {
	return []string{"--store", f.storeURL, "--schema", f.schema}
}

// shoot saves a screenshot of the page when OUTBOX_CONSOLE_SCREENSHOTS
// names a directory.
func shoot(t *testing.T, bctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("OUTBOX_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitText polls the text of sel on the current page until ok accepts it.
func waitText(t *testing.T, ctx, bctx context.Context, what, sel string, ok func(string) bool) string {
	t.Helper()
	var last string
	for {
		tctx, cancel := context.WithTimeout(bctx, 2*time.Second)
		s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		if err == nil {
			last = strings.TrimSpace(s)
			if ok(last) {
				return last
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %s is %q (%v)", what, sel, last, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// attr reads one attribute of sel.
func attr(t *testing.T, bctx context.Context, sel, name string) string {
	t.Helper()
	r, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		t.Fatalf("%s[%s]: %v", sel, name, err)
	}
	return r.Value
}

// count counts the elements that match sel.
func count(t *testing.T, bctx context.Context, sel string) int {
	t.Helper()
	n, err := chromedp.Run(bctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

func number(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "s"), 64)
	if err != nil {
		return -1
	}
	return v
}

func messages(topic, keyPrefix string, n, keys int) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: topic, Key: fmt.Sprintf("%s-%d", keyPrefix, i%keys), Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return msgs
}

// consumeOne waits for the message id on stream and returns its subject.
func consumeOne(t *testing.T, ctx context.Context, natsURL, stream, id string) (subject string) {
	t.Helper()
	withJetStream(t, ctx, natsURL, func(js jetstream.JetStream) error {
		c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return err
		}
		for {
			msg, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
			if ctx.Err() != nil {
				return fmt.Errorf("message %s never arrived on stream %s", id, stream)
			}
			if err == nil && msg.Headers().Get("Nats-Msg-Id") == id {
				subject = msg.Subject()
				return nil
			}
		}
	})
	return subject
}

// withJetStream runs fn on a connection of its own.
func withJetStream(t *testing.T, ctx context.Context, url string, fn func(jetstream.JetStream) error) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("txoutbox console test"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(js); err != nil {
		t.Errorf("jetstream: %v", err)
	}
}
