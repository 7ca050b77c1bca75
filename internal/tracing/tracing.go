// Package tracing is the program's OpenTelemetry machinery: the tracer
// provider and its OTLP exporter, configured from -otel.* flags and
// OpenTelemetry's OTEL_* environment; a server span per HTTP request; a
// client span per attempt of the retry loop, named after the call it
// makes; and W3C trace context written on the way out, into an h1.Client
// request head or gRPC metadata. It knows net/http, gRPC, go-kit's
// endpoint and log, and internal/lb's Attempt, and nothing of the
// service: the routes it traces, the RPC method a call makes and what
// became of a call are its callers' to say.
//
// Nothing here is global but the stateless propagator: the tracer
// provider is the caller's and reaches each layer through its
// constructor, so two runs in one process trace apart. With tracing off
// none of it is installed; what stays on the hot path is a context lookup
// that finds no span.
package tracing

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-kit/log"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// TraceContext reads and writes W3C traceparent and tracestate. It has no
// state.
var TraceContext propagation.TraceContext

// flushTimeout bounds the export of the spans still buffered at shutdown.
const flushTimeout = 5 * time.Second

// NewTracerProvider returns a tracer provider that batches spans and
// exports them as cfg says, or nil when cfg traces nothing. version is the
// resource's service.version. Failed exports are logged to logger.
func NewTracerProvider(cfg Config, version string, logger log.Logger) (*sdktrace.TracerProvider, error) {
	if cfg.Endpoint == "" {
		return nil, nil
	}
	var exporter sdktrace.SpanExporter
	var err error
	if cfg.Protocol == "grpc" {
		exporter, err = otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	} else {
		exporter, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(cfg.Endpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter for %s: %w", cfg.Endpoint, err)
	}
	sampler := sdktrace.TraceIDRatioBased(cfg.SampleRatio)
	if cfg.ParentBased {
		sampler = sdktrace.ParentBased(sampler)
	}
	logger.Log("msg", "tracing", "endpoint", cfg.Endpoint, "protocol", cfg.Protocol,
		"sample_ratio", strconv.FormatFloat(cfg.SampleRatio, 'g', -1, 64), "service", cfg.ServiceName)
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(loggedExporter{SpanExporter: exporter, logger: logger}),
		sdktrace.WithSampler(sampler),
		// Merged over OTEL_RESOURCE_ATTRIBUTES by the SDK.
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL,
			semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(version))),
	), nil
}

// Shutdown exports the spans still buffered and stops tp (nil: does
// nothing). It has a fresh timeout: by then the caller's context is done,
// and the last requests' spans are worth the wait.
func Shutdown(tp *sdktrace.TracerProvider, logger log.Logger) {
	if tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		logger.Log("msg", "trace flush failed", "err", err)
	}
}

// loggedExporter logs a failed export to the program's logger. It returns
// nil, so the SDK does not report the error again to OpenTelemetry's
// global error handler, which would be shared by every run in a process.
type loggedExporter struct {
	sdktrace.SpanExporter
	logger log.Logger
}

func (e loggedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.logger.Log("msg", "trace export failed", "spans", len(spans), "err", err)
	}
	return nil
}
