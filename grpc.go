package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/go-kit/kit/endpoint"
	grpctransport "github.com/go-kit/kit/transport/grpc"
	"github.com/go-kit/log"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	group "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"stringsvc/internal/grpchealth"
	"stringsvc/internal/tracing"
	"stringsvc/pb"
)

// grpcOptions tunes the gRPC server; run fills it from the -grpc.* flags.
type grpcOptions struct {
	// MaxRecvMsgSize is the largest request message, in bytes: the HTTP
	// body limit. Larger is RESOURCE_EXHAUSTED. 0 keeps gRPC's 4 MiB.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds the calls in flight on one connection;
	// 0 means no bound.
	MaxConcurrentStreams uint32
	// KeepaliveMinTime is the shortest ping interval a client may use; a
	// client pinging more often is sent GOAWAY. 0 keeps gRPC's 5 minutes.
	KeepaliveMinTime time.Duration
	// KeepaliveTime is how long a connection may be silent before the server
	// pings it, and KeepaliveTimeout how long it waits for the answer before
	// closing it. 0 keeps gRPC's 2 hours and 20 seconds.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// TracerProvider, when set, gives each call of the service a server
	// span (otelgrpc), the child of the caller's traceparent if it sent
	// one. nil: no spans.
	TracerProvider trace.TracerProvider
}

// newGRPCServer returns a gRPC server for the two endpoints, the same
// endpoints, hence the same service and middlewares, the HTTP handler
// serves. It also serves grpc.health.v1.Health, through the returned health
// server, and server reflection, so grpcurl needs no .proto. Per-method
// metrics in go-grpc-middleware's names (grpc_server_handled_total,
// grpc_server_handling_seconds...) are registered on reg, so it is called
// once per registry. The cause of a failure whose message the client does
// not see is logged to logger.
func newGRPCServer(uppercase, count endpoint.Endpoint, opts grpcOptions, reg prometheus.Registerer,
	logger log.Logger) (*grpc.Server, *grpchealth.Server) {
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		// stringsvc_request_duration_seconds's, so the two compare bucket for bucket
		grpcprom.WithHistogramBuckets([]float64{
			.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
		})))
	reg.MustRegister(metrics)
	serverOpts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             opts.KeepaliveMinTime,
			PermitWithoutStream: true, // a proxy keeps its connection to an instance warm between calls
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    opts.KeepaliveTime,
			Timeout: opts.KeepaliveTimeout,
		}),
		grpc.ChainUnaryInterceptor(metrics.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(metrics.StreamServerInterceptor()),
	}
	if opts.MaxRecvMsgSize > 0 {
		serverOpts = append(serverOpts, grpc.MaxRecvMsgSize(opts.MaxRecvMsgSize))
	}
	if opts.TracerProvider != nil {
		// Health checks and reflection are not traced: probes would drown
		// the calls. The meter provider is a no-op one, not the global one:
		// Prometheus has the metrics already.
		serverOpts = append(serverOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(opts.TracerProvider),
			otelgrpc.WithPropagators(tracing.TraceContext),
			otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
			otelgrpc.WithFilter(filters.ServiceName(grpcServiceName)),
		)))
	}
	srv := grpc.NewServer(serverOpts...)

	errorHandler := grpctransport.ServerErrorHandler(grpcErrorLogger{logger: logger})
	pb.RegisterStringServiceServer(srv, grpcServer{
		uppercase: grpctransport.NewServer(uppercase,
			decodeGRPCUppercaseRequest, encodeGRPCUppercaseResponse, errorHandler),
		count: grpctransport.NewServer(count,
			decodeGRPCCountRequest, encodeGRPCCountResponse, errorHandler),
	})
	hs := grpchealth.New(grpcServiceName)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	metrics.InitializeMetrics(srv)
	return srv, hs
}

// grpcServer implements pb.StringServiceServer with go-kit handlers. It
// embeds the Unsafe interface, not the Unimplemented struct: an rpc added
// to the .proto must not compile until it is served here.
type grpcServer struct {
	pb.UnsafeStringServiceServer
	uppercase, count grpctransport.Handler
}

func (s grpcServer) Uppercase(ctx context.Context, req *pb.UppercaseRequest) (*pb.UppercaseResponse, error) {
	_, resp, err := s.uppercase.ServeGRPC(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp.(*pb.UppercaseResponse), nil
}

func (s grpcServer) Count(ctx context.Context, req *pb.CountRequest) (*pb.CountResponse, error) {
	_, resp, err := s.count.ServeGRPC(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp.(*pb.CountResponse), nil
}

func decodeGRPCUppercaseRequest(_ context.Context, grpcReq any) (any, error) {
	return uppercaseRequest{S: grpcReq.(*pb.UppercaseRequest).GetS()}, nil
}

// encodeGRPCUppercaseResponse returns a business error (endpoint.Failer) as
// the error, which grpcServer turns into a status.
func encodeGRPCUppercaseResponse(_ context.Context, response any) (any, error) {
	resp := response.(uppercaseResponse)
	if resp.err != nil {
		return nil, resp.err
	}
	return &pb.UppercaseResponse{V: resp.V}, nil
}

func decodeGRPCCountRequest(_ context.Context, grpcReq any) (any, error) {
	return countRequest{S: grpcReq.(*pb.CountRequest).GetS()}, nil
}

func encodeGRPCCountResponse(_ context.Context, response any) (any, error) {
	return &pb.CountResponse{V: int64(response.(countResponse).V)}, nil
}

// grpcServiceName is the service's full name in stringsvc.proto
// (pb.StringService_ServiceDesc.ServiceName), the one health checks ask
// about besides "" (the whole server).
const grpcServiceName = "stringsvc.v1.StringService"

// grpcErrorLogger is the go-kit error handler of the gRPC server: it logs,
// once, the cause of each failure the client got only a generic message
// for (INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED). A client error is the
// client's to read, and a client that went away has nobody to tell.
type grpcErrorLogger struct{ logger log.Logger }

func (h grpcErrorLogger) Handle(ctx context.Context, err error) {
	if httpStatus := errorStatus(err); httpStatus >= 500 {
		method, _ := grpc.Method(ctx)
		h.logger.Log(appendTraceIDs(ctx,
			[]any{"msg", "grpc call failed", "method", method, "code", grpcCode(err), "err", err})...)
	}
}

// addGRPCReadiness adds to g an actor that asks ready every interval and
// reports the answer through hs, so Check and Watch follow /readyz.
func addGRPCReadiness(g *group.Group, hs *grpchealth.Server, ready func() bool,
	interval time.Duration) {
	stop := make(chan struct{})
	g.Add(func() error {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		last := false // grpchealth.New starts NOT_SERVING
		for {
			if r := ready(); r != last {
				hs.SetReady(r)
				last = r
			}
			select {
			case <-ticker.C:
			case <-stop:
				return nil
			}
		}
	}, func(error) { close(stop) })
}

// addGRPCServer adds to g an actor serving srv on ln. On interrupt it
// reports NOT_SERVING (so health checkers and watching clients move away
// first), then lets the calls in flight finish for up to shutdownTimeout,
// then closes what is left. The interrupt only starts the drain, so the
// HTTP server, interrupted next, drains at the same time; the actor
// returns once the drain is over.
func addGRPCServer(g *group.Group, ln net.Listener, srv *grpc.Server, hs *grpchealth.Server,
	shutdownTimeout time.Duration, logger log.Logger) {
	interrupted, drained := make(chan struct{}), make(chan struct{})
	var drainOnce sync.Once
	g.Add(func() error {
		err := srv.Serve(ln)
		select {
		case <-interrupted:
			<-drained // Serve returns as the drain starts, not when it ends
			return nil
		default:
			return fmt.Errorf("serve gRPC: %w", err)
		}
	}, func(error) {
		drainOnce.Do(func() {
			close(interrupted)
			hs.Shutdown()
			go func() {
				defer close(drained)
				stopped := make(chan struct{})
				go func() {
					srv.GracefulStop()
					close(stopped)
				}()
				timer := time.NewTimer(shutdownTimeout)
				defer timer.Stop()
				select {
				case <-stopped:
				case <-timer.C:
					logger.Log("msg", "gRPC shutdown timed out, closing connections", "timeout", shutdownTimeout)
					srv.Stop()
					<-stopped
				}
			}()
		})
	})
}

// addGRPC adds to g the gRPC server of the two endpoints on ln, with its
// health following ready, and returns the health server.
func addGRPC(g *group.Group, cfg config, ln net.Listener, uppercase, count endpoint.Endpoint,
	ready func() bool, reg prometheus.Registerer, logger log.Logger) *grpchealth.Server {
	opts := cfg.grpc
	opts.MaxRecvMsgSize = int(min(cfg.maxBodyBytes, math.MaxInt32))
	srv, hs := newGRPCServer(uppercase, count, opts, reg, log.With(logger, "component", "grpc"))
	addGRPCServer(g, ln, srv, hs, cfg.shutdownTimeout, logger)
	addGRPCReadiness(g, hs, ready, time.Second)
	return hs
}

// dialGRPCInstance returns a client connection to one instance's gRPC
// address (host:port), made once per instance and shared by its calls. It
// does not wait for the connection: a call made while it is down fails at
// once with UNAVAILABLE, which counts against the instance's breaker. The
// keepalive pings are above the server's default -grpc.keepalive.min-time.
func dialGRPCInstance(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                30 * time.Second,
			Timeout:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   5 * time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("gRPC instance %q: %w", addr, err)
	}
	conn.Connect()
	return conn, nil
}

func encodeGRPCUppercaseRequest(_ context.Context, request any) (any, error) {
	return &pb.UppercaseRequest{S: request.(uppercaseRequest).S}, nil
}

func decodeGRPCUppercaseResponse(_ context.Context, grpcReply any) (any, error) {
	return uppercaseResponse{V: grpcReply.(*pb.UppercaseResponse).GetV()}, nil
}

// decodeGRPCUpstreamError sorts a failed call into a business error or a
// failure (see makeUppercaseGRPCProxy).
func decodeGRPCUpstreamError(ctx context.Context, err error) (any, error) {
	st := status.Convert(err)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("upstream call ended %s: %w", st.Code(), ctx.Err())
	case st.Code() == codes.InvalidArgument && st.Message() == ErrEmpty.Error():
		return uppercaseResponse{err: ErrEmpty}, nil
	case st.Code() == codes.InvalidArgument:
		return uppercaseResponse{err: fmt.Errorf("%w: instance refused the request: %s %q",
			errUpstream, st.Code(), st.Message())}, nil
	case st.Code() == codes.DeadlineExceeded:
		return nil, fmt.Errorf("upstream answered %s %q: %w",
			st.Code(), st.Message(), context.DeadlineExceeded)
	}
	return nil, fmt.Errorf("upstream answered %s %q", st.Code(), st.Message())
}
