package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	grpctransport "github.com/go-kit/kit/transport/grpc"
	"github.com/go-kit/log"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	group "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

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
	logger log.Logger) (*grpc.Server, *grpcHealthServer) {
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
	srv := grpc.NewServer(serverOpts...)

	errorHandler := grpctransport.ServerErrorHandler(grpcErrorLogger{logger: logger})
	pb.RegisterStringServiceServer(srv, grpcServer{
		uppercase: grpctransport.NewServer(uppercase,
			decodeGRPCUppercaseRequest, encodeGRPCUppercaseResponse, errorHandler),
		count: grpctransport.NewServer(count,
			decodeGRPCCountRequest, encodeGRPCCountResponse, errorHandler),
	})
	hs := newGRPCHealthServer()
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

// grpcCode maps an error to its gRPC status code. errorStatus stays the one
// table: the code is read off the HTTP status it chooses, which already
// orders the cases (a deadline inside an upstream failure is a deadline).
// A 502, every attempt failed or an instance answered what cannot be
// passed on, is UNAVAILABLE: gRPC has no "bad gateway".
func grpcCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	switch errorStatus(err) {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed:
		return codes.Unimplemented
	case statusClientClosedRequest:
		return codes.Canceled
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// grpcError turns err into a status error. As for HTTP, a server-side
// failure (5xx) or a client that went away carries statusMessage's short
// text, never the error's: the cause is logged by grpcErrorLogger.
func grpcError(err error) error {
	msg := err.Error()
	if httpStatus := errorStatus(err); hidesCause(httpStatus) {
		msg = statusMessage(httpStatus)
	}
	return status.Error(grpcCode(err), msg)
}

// hidesCause reports whether a client answered with httpStatus gets a
// generic message instead of the error's text.
func hidesCause(httpStatus int) bool {
	return httpStatus >= 500 || httpStatus == statusClientClosedRequest
}

// grpcErrorLogger is the go-kit error handler of the gRPC server: it logs,
// once, the cause of each failure the client got only a generic message
// for (INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED). A client error is the
// client's to read, and a client that went away has nobody to tell.
type grpcErrorLogger struct{ logger log.Logger }

func (h grpcErrorLogger) Handle(ctx context.Context, err error) {
	if httpStatus := errorStatus(err); httpStatus >= 500 {
		method, _ := grpc.Method(ctx)
		h.logger.Log("msg", "grpc call failed", "method", method, "code", grpcCode(err), "err", err)
	}
}

// grpcHealthServer is gRPC's standard health server, whose Shutdown also
// ends Watch streams once they have told their client NOT_SERVING. The
// standard one leaves them open, so GracefulStop would wait the whole
// shutdown timeout for any client watching (grpc-go issues 8776, 8882).
type grpcHealthServer struct {
	*health.Server
	draining     chan struct{} // closed by Shutdown
	shutdownOnce sync.Once
}

func newGRPCHealthServer() *grpcHealthServer {
	hs := &grpcHealthServer{Server: health.NewServer(), draining: make(chan struct{})}
	hs.SetReady(false) // until addGRPCReadiness has asked
	return hs
}

// grpcServiceName is the service's full name in stringsvc.proto
// (pb.StringService_ServiceDesc.ServiceName), the one health checks ask
// about besides "" (the whole server).
const grpcServiceName = "stringsvc.v1.StringService"

// SetReady reports the server and StringService SERVING or NOT_SERVING.
// After Shutdown it does nothing.
func (hs *grpcHealthServer) SetReady(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(grpcServiceName, st)
}

// Shutdown reports every service NOT_SERVING for good and ends the Watch
// streams once they have sent it.
func (hs *grpcHealthServer) Shutdown() {
	hs.shutdownOnce.Do(func() { close(hs.draining) })
	hs.Server.Shutdown()
}

// Watch implements grpc.health.v1.Health's Watch. After Shutdown the
// stream ends with UNAVAILABLE once its client was told the service is not
// serving.
func (hs *grpcHealthServer) Watch(req *healthpb.HealthCheckRequest,
	stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	w := &drainingWatch{Health_WatchServer: stream, ctx: ctx, cancel: cancel, draining: hs.draining}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-hs.draining:
			w.endIfDraining()
		case <-ctx.Done():
		}
	}()
	err := hs.Server.Watch(req, w)
	cancel()
	<-watched
	if w.ended.Load() {
		return status.Error(codes.Unavailable, "server shutting down")
	}
	return err
}

// drainingWatch is a Watch stream whose context ends when the server
// drains and the last status sent was not SERVING. Send records the status
// before it checks for draining, and the draining goroutine checks the
// status after draining began, so one of the two sees the other.
type drainingWatch struct {
	healthpb.Health_WatchServer
	ctx      context.Context
	cancel   context.CancelFunc
	draining <-chan struct{}
	serving  atomic.Bool // the last status sent was SERVING
	ended    atomic.Bool // the stream was ended for draining
}

func (w *drainingWatch) Context() context.Context { return w.ctx }

func (w *drainingWatch) Send(resp *healthpb.HealthCheckResponse) error {
	err := w.Health_WatchServer.Send(resp)
	w.serving.Store(resp.GetStatus() == healthpb.HealthCheckResponse_SERVING)
	w.endIfDraining()
	return err
}

func (w *drainingWatch) endIfDraining() {
	select {
	case <-w.draining:
		if !w.serving.Load() {
			w.ended.Store(true)
			w.cancel()
		}
	default:
	}
}

// addGRPCReadiness adds to g an actor that asks ready every interval and
// reports the answer through hs, so Check and Watch follow /readyz.
func addGRPCReadiness(g *group.Group, hs *grpcHealthServer, ready func() bool,
	interval time.Duration) {
	stop := make(chan struct{})
	g.Add(func() error {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		last := false // newGRPCHealthServer starts NOT_SERVING
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
// then closes what is left.
func addGRPCServer(g *group.Group, ln net.Listener, srv *grpc.Server, hs *grpcHealthServer,
	shutdownTimeout time.Duration, logger log.Logger) {
	g.Add(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	}, func(error) {
		hs.Shutdown()
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
	})
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

// makeUppercaseGRPCProxy returns an endpoint that calls Uppercase on the
// instance behind conn; the request's remaining deadline travels with it
// (grpc-timeout). As makeUppercaseProxy does for HTTP, an answer the
// instance gave on purpose, INVALID_ARGUMENT, comes back inside the
// response, neither retried nor a breaker failure: ErrEmpty for "empty
// string", errUpstream for anything else. Every other code is an error,
// a context error where the call ran out of time or was canceled.
func makeUppercaseGRPCProxy(conn *grpc.ClientConn) endpoint.Endpoint {
	call := grpctransport.NewClient(conn, grpcServiceName, "Uppercase",
		encodeGRPCUppercaseRequest, decodeGRPCUppercaseResponse, &pb.UppercaseResponse{}).Endpoint()
	return func(ctx context.Context, request any) (any, error) {
		response, err := call(ctx, request)
		if err != nil {
			return decodeGRPCUpstreamError(ctx, err)
		}
		return response, nil
	}
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
