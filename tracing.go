package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/log"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"stringsvc/internal/lb"
)

// Tracing, with -otel.endpoint or OpenTelemetry's environment: one server
// span per request (HTTP here, gRPC through otelgrpc in grpc.go), one
// client span per call to an upstream instance, W3C trace context read on
// the way in and written on every call out, spans batched and exported
// over OTLP. Nothing here is global: the tracer provider is run's and
// reaches each layer through its constructor, so two runs in one process
// trace apart. With tracing off none of it is installed; what stays on
// the hot path is a context lookup that finds no span.

// traceContext reads and writes W3C traceparent and tracestate.
var traceContext propagation.TraceContext

// tracerName is the instrumentation scope of the program's own spans.
const tracerName = "stringsvc"

// traceFlushTimeout bounds the export of the spans still buffered at
// shutdown.
const traceFlushTimeout = 5 * time.Second

// newTracerProvider returns a tracer provider that batches spans and
// exports them as cfg says, or nil when cfg traces nothing. Failed exports
// are logged to logger.
func newTracerProvider(cfg otelConfig, logger log.Logger) (*sdktrace.TracerProvider, error) {
	if cfg.endpoint == "" {
		return nil, nil
	}
	var exporter sdktrace.SpanExporter
	var err error
	if cfg.protocol == "grpc" {
		exporter, err = otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpointURL(cfg.endpoint))
	} else {
		exporter, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(cfg.endpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter for %s: %w", cfg.endpoint, err)
	}
	sampler := sdktrace.TraceIDRatioBased(cfg.sampleRatio)
	if cfg.parentBased {
		sampler = sdktrace.ParentBased(sampler)
	}
	logger.Log("msg", "tracing", "endpoint", cfg.endpoint, "protocol", cfg.protocol,
		"sample_ratio", strconv.FormatFloat(cfg.sampleRatio, 'g', -1, 64), "service", cfg.serviceName)
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(loggedExporter{SpanExporter: exporter, logger: logger}),
		sdktrace.WithSampler(sampler),
		// Merged over OTEL_RESOURCE_ATTRIBUTES by the SDK.
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL,
			semconv.ServiceName(cfg.serviceName), semconv.ServiceVersion(buildVersion()))),
	), nil
}

// useTracing gives the layers that trace the provider's tracer, through
// cfg; a nil tp leaves tracing out.
func (cfg *config) useTracing(tp *sdktrace.TracerProvider) {
	if tp != nil {
		cfg.Tracer, cfg.grpc.TracerProvider = tp.Tracer(tracerName), tp
	}
}

// shutdownTracing exports the spans still buffered and stops tp (nil: does
// nothing). It has a fresh timeout: by then run's context is done, and the
// last requests' spans are worth the wait.
func shutdownTracing(tp *sdktrace.TracerProvider, logger log.Logger) {
	if tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
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

// traceRequests gives each request to /uppercase and /count a server span,
// the child of the caller's traceparent if it sent one, named and
// attributed per OpenTelemetry's HTTP conventions. A 5xx makes the span an
// error; a 4xx, the client's mistake or a business error, does not. Other
// routes (/metrics, health checks) are not traced: scrapes and probes
// would drown the requests.
func traceRequests(tracer trace.Tracer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := r.URL.Path
		if route != "/uppercase" && route != "/count" {
			next.ServeHTTP(w, r)
			return
		}
		method, attrs := httpServerAttributes(r, route)
		ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, method+" "+route,
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		sw := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))
		status := cmpOr(sw.status, http.StatusOK)
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(otelcodes.Error, http.StatusText(status))
		}
	})
}

func cmpOr(v, fallback int) int {
	if v == 0 {
		return fallback
	}
	return v
}

// httpServerAttributes returns the span name's method ("HTTP" for one
// OpenTelemetry does not know) and the request's attributes.
func httpServerAttributes(r *http.Request, route string) (string, []attribute.KeyValue) {
	method := r.Method
	attrs := make([]attribute.KeyValue, 0, 11)
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	default:
		attrs = append(attrs, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(method))
		method = "HTTP"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs = append(attrs, semconv.URLScheme(scheme), semconv.URLPath(r.URL.Path), semconv.HTTPRoute(route),
		semconv.NetworkProtocolVersion(strings.TrimPrefix(r.Proto, "HTTP/")))
	attrs = appendAddress(attrs, r.Host, semconv.ServerAddress, semconv.ServerPort)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, semconv.ClientAddress(host))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	return method, attrs
}

// appendAddress appends hostport's host and, if it has one, its port.
func appendAddress(attrs []attribute.KeyValue, hostport string,
	address func(string) attribute.KeyValue, port func(int) attribute.KeyValue) []attribute.KeyValue {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return append(attrs, address(hostport))
	}
	attrs = append(attrs, address(host))
	if n, err := strconv.Atoi(p); err == nil {
		attrs = append(attrs, port(n))
	}
	return attrs
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int // 0 until the header is written
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Attributes of a client span, beside OpenTelemetry's own: which instance,
// which attempt, and the outcome stringsvc_upstream_requests_total counts.
const (
	attrUpstream      = attribute.Key("stringsvc.upstream")
	attrAttemptNumber = attribute.Key("stringsvc.attempt.number")
	attrAttemptRetry  = attribute.Key("stringsvc.attempt.retry")
	attrAttemptHedge  = attribute.Key("stringsvc.attempt.hedge")
	attrOutcome       = attribute.Key("stringsvc.attempt.outcome")
)

// observeAttempts returns the lb.Policy.Observe hook that gives each call
// to an instance a client span, a child of the request's server span.
// traceAttempts, inside the instance's endpoint, names it after the call.
// A failed call is an error span; a business error is not a failure, and a
// call cancelled because another answered first (or the client left) is
// not an error.
func observeAttempts(tracer trace.Tracer) func(context.Context, lb.Attempt) (context.Context, func(error)) {
	return func(ctx context.Context, a lb.Attempt) (context.Context, func(error)) {
		attrs := []attribute.KeyValue{
			attrUpstream.String(a.Instance),
			attrAttemptNumber.Int(a.Number),
			attrAttemptRetry.Bool(a.Number > 1),
			attrAttemptHedge.Bool(a.Hedge),
		}
		if a.Number > 1 {
			attrs = append(attrs, semconv.HTTPRequestResendCount(a.Number-1))
		}
		ctx, span := tracer.Start(ctx, "upstream",
			trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
		return ctx, func(err error) {
			if err != nil && !errors.Is(err, context.Canceled) {
				span.SetStatus(otelcodes.Error, err.Error())
			}
			span.End()
		}
	}
}

// traceAttempts names the span observeAttempts started for a call to the
// instance at target after what the call does, as OpenTelemetry's HTTP or
// RPC client conventions say, with the instance's address, and adds the
// call's outcome. It is installed only with tracing on.
func traceAttempts(target *url.URL) endpoint.Middleware {
	var name string
	var attrs []attribute.KeyValue
	if target.Scheme == "grpc" {
		name = grpcServiceName + "/Uppercase"
		attrs = []attribute.KeyValue{semconv.RPCSystemNameGRPC, semconv.RPCMethod(name)}
	} else {
		name = http.MethodPost + " " + target.Path
		attrs = []attribute.KeyValue{semconv.HTTPRequestMethodPost, semconv.URLFull(target.String()),
			semconv.URLTemplate(target.Path)}
	}
	host, port := target.Hostname(), target.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[target.Scheme]
	}
	attrs = appendAddress(attrs, net.JoinHostPort(host, port), semconv.ServerAddress, semconv.ServerPort)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			span := trace.SpanFromContext(ctx)
			if !span.IsRecording() {
				return next(ctx, request)
			}
			span.SetName(name)
			span.SetAttributes(attrs...)
			response, err := next(ctx, request)
			span.SetAttributes(attrOutcome.String(outcomeOf(response, err).String()))
			return response, err
		}
	}
}

// appendTraceContext appends the traceparent header line of sc, and its
// tracestate line if it has one, for h1.Client.Post: the W3C text
// traceContext.Inject writes, without a header map.
func appendTraceContext(b []byte, sc trace.SpanContext) []byte {
	traceID, spanID := sc.TraceID(), sc.SpanID()
	b = append(b, "traceparent: 00-"...)
	b = append(hex.AppendEncode(b, traceID[:]), '-')
	b = append(hex.AppendEncode(b, spanID[:]), '-')
	flags := sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom) // the ones W3C defines
	b = append(hex.AppendEncode(b, []byte{byte(flags)}), "\r\n"...)
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = append(append(append(b, "tracestate: "...), ts.String()...), "\r\n"...)
	}
	return b
}

// injectGRPCTraceContext is a go-kit gRPC ClientBefore: it writes the
// call's span context into the call's metadata, as appendTraceContext does
// into an HTTP request's header, and nothing when there is none.
func injectGRPCTraceContext(ctx context.Context, md *metadata.MD) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		traceContext.Inject(ctx, metadataCarrier(*md))
	}
	return ctx
}

// metadataCarrier is gRPC metadata as a propagation.TextMapCarrier.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// recordGRPCStatus adds a gRPC call's status code to the call's span, if
// it records one, in the form OpenTelemetry's RPC conventions (and
// otelgrpc, on the server) use: "OK", "INVALID_ARGUMENT".
func recordGRPCStatus(ctx context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	code := status.Code(err)
	name := "CODE(" + strconv.Itoa(int(code)) + ")"
	if int(code) < len(grpcCodeNames) {
		name = grpcCodeNames[code]
	}
	span.SetAttributes(semconv.RPCResponseStatusCode(name))
}

// grpcCodeNames are gRPC's status code names, by code.
var grpcCodeNames = [...]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL",
	codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}
