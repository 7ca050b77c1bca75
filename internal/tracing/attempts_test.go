package tracing

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"stringsvc/internal/lb"
)

// TestObserveAttempts checks the client span each call to an instance gets:
// kind, attempt attributes, and which errors make it an error span.
func TestObserveAttempts(t *testing.T) {
	t.Parallel()
	tracer, exporter := newTestTracer(t)
	observe := ObserveAttempts(tracer)
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

// TestCalls checks the name and attributes Calls gives an attempt's span,
// for an HTTP and a gRPC instance, with the caller's outcome; and that a
// span that records nothing is left alone.
func TestCalls(t *testing.T) {
	t.Parallel()
	tracer, exporter := newTestTracer(t)
	tests := []struct {
		target    string
		wantName  string
		wantAttrs []attribute.KeyValue
	}{
		{"http://a:8080/uppercase", "POST /uppercase", []attribute.KeyValue{
			attribute.String("http.request.method", "POST"), attribute.String("url.full", "http://a:8080/uppercase"),
			attribute.String("url.template", "/uppercase"), attribute.String("server.address", "a"),
			attribute.Int("server.port", 8080), attrOutcome.String("outcome of answer")}},
		{"https://b/uppercase", "POST /uppercase", []attribute.KeyValue{
			attribute.String("http.request.method", "POST"), attribute.String("url.full", "https://b/uppercase"),
			attribute.String("url.template", "/uppercase"), attribute.String("server.address", "b"),
			attribute.Int("server.port", 443), attrOutcome.String("outcome of answer")}},
		{"grpc://c:9090", "pkg.Svc/Method", []attribute.KeyValue{
			attribute.String("rpc.system.name", "grpc"), attribute.String("rpc.method", "pkg.Svc/Method"),
			attribute.String("server.address", "c"), attribute.Int("server.port", 9090),
			attrOutcome.String("outcome of answer")}},
	}
	calls := 0
	outcome := func(response any, err error) string { calls++; return "outcome of " + response.(string) }
	answer := func(context.Context, any) (any, error) { return "answer", nil }
	for _, tt := range tests {
		target, err := url.Parse(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		e := Calls(target, "pkg.Svc/Method", outcome)(answer)
		ctx, span := tracer.Start(context.Background(), "upstream")
		if _, err := e(ctx, nil); err != nil {
			t.Fatal(err)
		}
		span.End()
		// Not recording: neither named nor given the outcome.
		if _, err := e(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if calls != len(tests) {
		t.Errorf("outcome called %d times; want %d, once per recorded call", calls, len(tests))
	}
	spans := exporter.GetSpans()
	if len(spans) != len(tests) {
		t.Fatalf("%d spans ended; want %d", len(spans), len(tests))
	}
	for i, tt := range tests {
		if spans[i].Name != tt.wantName {
			t.Errorf("call of %s: span %q; want %q", tt.target, spans[i].Name, tt.wantName)
		}
		if diff := cmp.Diff(tt.wantAttrs, spans[i].Attributes, cmp.Comparer(func(a, b attribute.Value) bool { return a == b })); diff != "" {
			t.Errorf("call of %s: attributes (-want +got):\n%s", tt.target, diff)
		}
	}
}
