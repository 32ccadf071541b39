package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outboxotel "github.com/txoutbox/txoutbox/contrib/otel"
)

// tracingWanted reports whether publishes are traced: --otel, or an OTLP
// endpoint in the environment.
func tracingWanted(flag bool, a *app.App) bool {
	if flag {
		return true
	}
	for _, env := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if a.Env(env) != "" {
			return true
		}
	}
	return false
}

// startTracing wraps the broker's publisher with the publish spans of
// contrib/otel, exported over OTLP/HTTP as the OTEL_* variables say
// (endpoint, headers, service name...). The returned function flushes and
// stops the exporter.
func startTracing(ctx context.Context, log *slog.Logger, br *backend.Broker) (stop func(), err error) {
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "outbox-relay")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("outbox relay: OpenTelemetry", slog.Any("error", err))
	}))
	br.Publisher = outboxotel.WrapPublisher(br.Publisher,
		outboxotel.WithMessagingSystem(br.Kind), outboxotel.WithTracerProvider(tp))
	log.Info("outbox relay: tracing publishes with OpenTelemetry (OTLP/HTTP)")
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("outbox relay: flushing traces", slog.Any("error", err))
		}
	}, nil
}
