package tracing

import (
	"encoding/hex"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Requests gives each request to one of routes (exact paths) a server
// span, the child of the caller's traceparent if it sent one, named and
// attributed per OpenTelemetry's HTTP conventions. A 5xx makes the span an
// error; a 4xx, the client's mistake or a business error, does not. Other
// paths are passed to next untraced, so that scrapes and probes do not
// drown the requests.
func Requests(tracer trace.Tracer, routes []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := r.URL.Path
		if !slices.Contains(routes, route) {
			next.ServeHTTP(w, r)
			return
		}
		method, attrs := httpServerAttributes(r, route)
		ctx := TraceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
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

// AppendTraceContext appends the traceparent header line of sc, and its
// tracestate line if it has one, for h1.Client.Post: the W3C text
// TraceContext.Inject writes, without a header map.
func AppendTraceContext(b []byte, sc trace.SpanContext) []byte {
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
