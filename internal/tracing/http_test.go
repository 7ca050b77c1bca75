package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

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
			TraceContext.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.HeaderCarrier(header))
			var want strings.Builder
			for _, name := range []string{"traceparent", "tracestate"} {
				if v := header.Get(name); v != "" {
					fmt.Fprintf(&want, "%s: %s\r\n", name, v)
				}
			}
			if got := string(AppendTraceContext(nil, sc)); got != want.String() {
				t.Errorf("AppendTraceContext(%v) = %q; want %q, as TraceContext.Inject writes", sc, got, want.String())
			}
		})
	}
}

// TestRequests checks that only the given routes get a server span, the
// caller's traceparent its parent, and that a 5xx makes it an error and a
// 4xx does not.
func TestRequests(t *testing.T) {
	t.Parallel()
	tracer, exporter := newTestTracer(t)
	status := map[string]int{"/a": http.StatusOK, "/b": http.StatusBadRequest, "/c": http.StatusBadGateway}
	h := Requests(tracer, []string{"/a", "/b", "/c"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, ok := status[r.URL.Path]; ok && code != http.StatusOK {
			w.WriteHeader(code)
		}
		fmt.Fprint(w, "ok")
	}))
	caller := mustSpanContext(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", trace.FlagsSampled, "")
	for _, path := range []string{"/a", "/b", "/c", "/metrics", "/a/x"} {
		r := httptest.NewRequest(http.MethodPost, "http://svc:8080"+path, nil)
		TraceContext.Inject(trace.ContextWithSpanContext(context.Background(), caller), propagation.HeaderCarrier(r.Header))
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	spans := exporter.GetSpans()
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	if want := "POST /a,POST /b,POST /c"; strings.Join(names, ",") != want {
		t.Fatalf("spans %q; want %s: only the routes given", names, want)
	}
	for i, wantErr := range []bool{false, false, true} {
		s := spans[i]
		if s.SpanKind != trace.SpanKindServer || s.Parent.SpanID() != caller.SpanID() || s.SpanContext.TraceID() != caller.TraceID() {
			t.Errorf("%s: kind %v, parent %v; want a server span, child of the caller's", s.Name, s.SpanKind, s.Parent.SpanID())
		}
		if got := s.Status.Code == otelcodes.Error; got != wantErr {
			t.Errorf("%s: status %v; want an error: %v", s.Name, s.Status.Code, wantErr)
		}
		code := status[strings.TrimPrefix(s.Name, "POST ")]
		if !hasAttr(s.Attributes, attribute.Int("http.response.status_code", code)) ||
			!hasAttr(s.Attributes, attribute.String("http.route", strings.TrimPrefix(s.Name, "POST "))) {
			t.Errorf("%s: attributes %v; want http.response.status_code=%d and its http.route", s.Name, s.Attributes, code)
		}
	}
}

func hasAttr(attrs []attribute.KeyValue, want attribute.KeyValue) bool {
	for _, a := range attrs {
		if a == want {
			return true
		}
	}
	return false
}
