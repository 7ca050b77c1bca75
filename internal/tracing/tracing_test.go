package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// newTestTracer returns a tracer that samples everything and records each
// span, once ended, in the returned exporter.
func newTestTracer(tb testing.TB) (trace.Tracer, *tracetest.InMemoryExporter) {
	tb.Helper()
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	tb.Cleanup(func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			tb.Errorf("shut the test tracer provider down: %v", err)
		}
	})
	return tp.Tracer("test"), exporter
}

func mustSpanContext(tb testing.TB, traceID, spanID string, flags trace.TraceFlags, state string) trace.SpanContext {
	tb.Helper()
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		tb.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := trace.ParseTraceState(state)
	if err != nil {
		tb.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: ts})
}
