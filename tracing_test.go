package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"stringsvc/internal/lb"
	"stringsvc/internal/logfmt"
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

// TestAppendTraceContext holds the header lines the HTTP upstream client
// writes to what OpenTelemetry's own propagator injects.
func TestAppendTraceContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags trace.TraceFlags
		state string
	}{
		{name: "sampled", flags: trace.FlagsSampled},
		{name: "not sampled", flags: 0},
		{name: "random flag kept", flags: trace.FlagsSampled | trace.FlagsRandom},
		{name: "unknown flags dropped", flags: 0xfc},
		{name: "tracestate", flags: trace.FlagsSampled, state: "vendor=a,other=b:c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := mustSpanContext(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", tt.flags, tt.state)
			header := http.Header{}
			traceContext.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.HeaderCarrier(header))
			var want strings.Builder
			for _, name := range []string{"traceparent", "tracestate"} {
				if v := header.Get(name); v != "" {
					fmt.Fprintf(&want, "%s: %s\r\n", name, v)
				}
			}
			if got := string(appendTraceContext(nil, sc)); got != want.String() {
				t.Errorf("appendTraceContext(%v) = %q; want %q, as traceContext.Inject writes", sc, got, want.String())
			}
		})
	}
}

// TestObserveAttempts checks the client span each call to an instance gets:
// kind, attempt attributes, and which errors make it an error span.
func TestObserveAttempts(t *testing.T) {
	t.Parallel()
	tracer, exporter := newTestTracer(t)
	observe := observeAttempts(tracer)
	parentCtx, parent := tracer.Start(context.Background(), "request")
	tests := []struct {
		attempt    lb.Attempt
		err        error
		wantStatus otelcodes.Code
		wantAttrs  []attribute.KeyValue
	}{
		{lb.Attempt{Instance: "a:1", Number: 1}, nil, otelcodes.Unset, []attribute.KeyValue{
			attrUpstream.String("a:1"), attrAttemptNumber.Int(1), attrAttemptRetry.Bool(false), attrAttemptHedge.Bool(false)}},
		{lb.Attempt{Instance: "b:1", Number: 1, Hedge: true}, context.Canceled, otelcodes.Unset, []attribute.KeyValue{
			attrUpstream.String("b:1"), attrAttemptNumber.Int(1), attrAttemptRetry.Bool(false), attrAttemptHedge.Bool(true)}},
		{lb.Attempt{Instance: "c:1", Number: 2}, errors.New("upstream answered 500"), otelcodes.Error, []attribute.KeyValue{
			attrUpstream.String("c:1"), attrAttemptNumber.Int(2), attrAttemptRetry.Bool(true), attrAttemptHedge.Bool(false),
			attribute.Int("http.request.resend_count", 1)}},
	}
	for _, tt := range tests {
		ctx, done := observe(parentCtx, tt.attempt)
		if sc := trace.SpanContextFromContext(ctx); sc.SpanID() == parent.SpanContext().SpanID() {
			t.Errorf("Observe(%+v) returned the parent's context; want one with the attempt's span", tt.attempt)
		}
		done(tt.err)
	}
	parent.End()
	spans := exporter.GetSpans()
	if len(spans) != len(tests)+1 {
		t.Fatalf("%d spans ended; want %d", len(spans), len(tests)+1)
	}
	for i, tt := range tests {
		s := spans[i]
		if s.SpanKind != trace.SpanKindClient || s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("attempt %+v: span kind %v, parent %v; want client, child of the request's span", tt.attempt, s.SpanKind, s.Parent.SpanID())
		}
		if s.Status.Code != tt.wantStatus {
			t.Errorf("attempt %+v ending with %v: status %v; want %v", tt.attempt, tt.err, s.Status.Code, tt.wantStatus)
		}
		if diff := cmp.Diff(tt.wantAttrs, s.Attributes, cmp.Comparer(func(a, b attribute.Value) bool { return a == b })); diff != "" {
			t.Errorf("attempt %+v attributes (-want +got):\n%s", tt.attempt, diff)
		}
	}
}

// TestLoggingMiddlewareTraceIDs checks that a request's log line carries
// the IDs of its span only when the span is sampled.
func TestLoggingMiddlewareTraceIDs(t *testing.T) {
	t.Parallel()
	sampled := mustSpanContext(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", trace.FlagsSampled, "")
	unsampled := mustSpanContext(t, "4bf92f3577b34da6a3ce929d0e0e4737", "00f067aa0ba902b8", 0, "")
	tests := []struct {
		name    string
		sc      trace.SpanContext
		wantEnd string // "": no IDs
	}{
		{"sampled", sampled, " trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7\n"},
		{"not sampled", unsampled, ""},
		{"no span", trace.SpanContext{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			mw := loggingMiddleware{logger: logfmt.New(&buf), next: stringService{}}
			ctx := trace.ContextWithSpanContext(context.Background(), tt.sc)
			if _, err := mw.Uppercase(ctx, "hi"); err != nil {
				t.Fatal(err)
			}
			line := buf.String()
			if tt.wantEnd != "" && !strings.HasSuffix(line, tt.wantEnd) {
				t.Errorf("log line %q; want it to end with %q", line, tt.wantEnd)
			}
			if tt.wantEnd == "" && (strings.Contains(line, "trace_id") || strings.Contains(line, "span_id")) {
				t.Errorf("log line %q; want no trace_id or span_id", line)
			}
		})
	}
}

// TestProxyWithoutTracingSendsNoTraceContext checks that with tracing off
// a proxy neither forwards a caller's traceparent nor writes one of its
// own, and logs no trace IDs.
func TestProxyWithoutTracingSendsNoTraceContext(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []http.Header
	h := newServiceHandler(func() bool { return true }, 1<<20)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(backend.Close)
	proxy := startStringsvcEnv(t, nil, "-proxy", strings.TrimPrefix(backend.URL, "http://"))
	tp := clientTrace(1, true)
	if status, body := postTraced(t, "http://"+proxy.addr+"/uppercase", `{"s":"hello"}`, tp); status != http.StatusOK {
		t.Fatalf("POST /uppercase = %d %q; want 200", status, body)
	}
	if err := proxy.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("backend got %d requests; want 1", len(got))
	}
	for _, name := range []string{"Traceparent", "Tracestate"} {
		if v := got[0].Values(name); len(v) > 0 {
			t.Errorf("backend got %s: %q from a proxy without tracing; want none", name, v)
		}
	}
	if line := logLine(t, proxy.stderr.String(), "input=hello "); strings.Contains(line, "trace_id") {
		t.Errorf("log line %q of a proxy without tracing; want no trace_id", line)
	}
}
