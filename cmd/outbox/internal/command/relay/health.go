package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	outboxprom "github.com/txoutbox/txoutbox/contrib/prometheus"
)

// Relay loop states, for /healthz.
const (
	stateStarting int32 = iota // migrating, or about to run
	stateRunning
	stateStopped
)

// health serves /healthz and /readyz.
type health struct {
	store   *backend.Store
	broker  *backend.Broker
	timeout time.Duration
	state   atomic.Int32
	// explain turns a failed ping into the CLI's message for it
	// (app.Problem); "" keeps the error's own text.
	explain func(backend.Target, error) string
}

// reason is what /readyz says of a failed ping of t.
func (h *health) reason(t backend.Target, err error) string {
	if h.explain != nil {
		if msg := h.explain(t, err); msg != "" {
			return msg
		}
	}
	return err.Error()
}

// serve listens on addr and serves /metrics, /healthz and /readyz until
// the returned function is called.
func (h *health) serve(addr string, observer *outboxprom.Observer, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		observer,
	)
	if sr, err := h.store.Stats(); err == nil {
		stats, err := outboxprom.NewStatsCollector(sr, outboxprom.StatsConfig{Logger: log})
		if err != nil {
			return nil, err
		}
		reg.MustRegister(stats)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("outbox relay: metrics server failed", slog.Any("error", err))
		}
	}()
	log.Info("outbox relay: serving /metrics, /healthz and /readyz", slog.String("addr", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// healthz answers 200 while the process and its relay loop are alive
// (starting or running), and 503 once the loop has stopped.
func (h *health) healthz(w http.ResponseWriter, _ *http.Request) {
	switch h.state.Load() {
	case stateStarting:
		fmt.Fprintln(w, "ok: starting")
	case stateRunning:
		fmt.Fprintln(w, "ok: relaying")
	default:
		http.Error(w, "stopped", http.StatusServiceUnavailable)
	}
}

// readyz answers 200 when the relay runs and both the store and the broker
// answer within the health timeout, 503 with the reasons otherwise.
func (h *health) readyz(w http.ResponseWriter, r *http.Request) {
	if h.state.Load() != stateRunning {
		http.Error(w, "not ready: the relay is not running", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	var storeErr, brokerErr error
	var wg sync.WaitGroup
	wg.Go(func() { storeErr = h.store.Ping(ctx) })
	wg.Go(func() { brokerErr = h.broker.Ping(ctx) })
	wg.Wait()
	if storeErr == nil && brokerErr == nil {
		fmt.Fprintln(w, "ready")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready")
	if storeErr != nil {
		fmt.Fprintf(w, "store: %s\n", h.reason(h.store.Target, storeErr))
	}
	if brokerErr != nil {
		fmt.Fprintf(w, "broker: %s\n", h.reason(h.broker.Target, brokerErr))
	}
}
