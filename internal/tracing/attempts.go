package tracing

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"stringsvc/internal/lb"
)

// Attributes of a client span, beside OpenTelemetry's own: which instance,
// which attempt, and the outcome the caller's outcome function names. Their
// names keep the program's namespace, which dashboards and queries know.
const (
	attrUpstream      = attribute.Key("stringsvc.upstream")
	attrAttemptNumber = attribute.Key("stringsvc.attempt.number")
	attrAttemptRetry  = attribute.Key("stringsvc.attempt.retry")
	attrAttemptHedge  = attribute.Key("stringsvc.attempt.hedge")
	attrOutcome       = attribute.Key("stringsvc.attempt.outcome")
)

// ObserveAttempts returns the lb.Policy.Observe hook that gives each call
// to an instance a client span, a child of the request's server span.
// Calls, inside the instance's endpoint, names it after the call. A failed
// call is an error span; a business error, which rides inside the
// response, is not a failure, and a call cancelled because another
// answered first (or the client left) is not an error.
func ObserveAttempts(tracer trace.Tracer) func(context.Context, lb.Attempt) (context.Context, func(error)) {
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

// Calls names the span ObserveAttempts started for a call to the instance
// at target after what the call does, as OpenTelemetry's HTTP or RPC
// client conventions say, with the instance's address, and adds the call's
// outcome as outcome names it. A grpc:// target's call is rpcMethod
// ("package.Service/Method"); any other target's is a POST to its path.
// Install it only with tracing on.
func Calls(target *url.URL, rpcMethod string, outcome func(response any, err error) string) endpoint.Middleware {
	var name string
	var attrs []attribute.KeyValue
	if target.Scheme == "grpc" {
		name = rpcMethod
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
			span.SetAttributes(attrOutcome.String(outcome(response, err)))
			return response, err
		}
	}
}
