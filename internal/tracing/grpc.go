package tracing

import (
	"context"
	"strconv"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// InjectGRPC is a go-kit gRPC ClientBefore: it writes the call's span
// context into the call's metadata, as AppendTraceContext does into an
// HTTP request's header, and nothing when there is none.
func InjectGRPC(ctx context.Context, md *metadata.MD) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		TraceContext.Inject(ctx, metadataCarrier(*md))
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

// RecordGRPCStatus adds a gRPC call's status code to the call's span, if
// it records one, in the form OpenTelemetry's RPC conventions (and
// otelgrpc, on the server) use: "OK", "INVALID_ARGUMENT".
func RecordGRPCStatus(ctx context.Context, err error) {
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
