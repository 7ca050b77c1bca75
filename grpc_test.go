package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/ratelimit"
	"github.com/go-kit/log"
	group "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"stringsvc/internal/lb"
	"stringsvc/internal/testenv"
	"stringsvc/pb"
)

// fakeService is a StringService whose methods are the functions it holds;
// a nil uppercase or count is stringService's.
type fakeService struct {
	uppercase func(ctx context.Context, s string) (string, error)
	count     func(ctx context.Context, s string) int
}

func (f fakeService) Uppercase(ctx context.Context, s string) (string, error) {
	if f.uppercase == nil {
		return stringService{}.Uppercase(ctx, s)
	}
	return f.uppercase(ctx, s)
}

func (f fakeService) Count(ctx context.Context, s string) int {
	if f.count == nil {
		return stringService{}.Count(ctx, s)
	}
	return f.count(ctx, s)
}

// grpcTestServer is svc served over gRPC on 127.0.0.1 as run serves it:
// through logging and instrumenting, in a run.Group with addGRPCServer and
// addGRPCReadiness.
type grpcTestServer struct {
	addr   string
	reg    *prometheus.Registry
	logs   *testenv.Buffer // the gRPC transport's log
	conn   *grpc.ClientConn
	client pb.StringServiceClient
	health healthpb.HealthClient

	stopOnce sync.Once
	cancel   context.CancelFunc
	stopped  chan error // receives g.Run's result
}

// startGRPCServer serves svc until the test ends. ready nil means always
// ready.
func startGRPCServer(tb testing.TB, svc StringService, ready func() bool, opts grpcOptions) *grpcTestServer {
	tb.Helper()
	if ready == nil {
		ready = func() bool { return true }
	}
	ts := &grpcTestServer{reg: prometheus.NewRegistry(), logs: new(testenv.Buffer), stopped: make(chan error, 1)}
	svc = loggingMiddleware{logger: log.NewNopLogger(), next: svc}
	svc = newInstrumentingMiddleware(newMetrics(ts.reg))(svc)
	logger := log.NewLogfmtLogger(ts.logs)
	srv, hs := newGRPCServer(makeUppercaseEndpoint(svc), makeCountEndpoint(svc), opts, ts.reg, logger)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	ts.addr = ln.Addr().String()
	var g group.Group
	addGRPCServer(&g, ln, srv, hs, time.Minute, logger)
	addGRPCReadiness(&g, hs, ready, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	go func() { ts.stopped <- g.Run() }()
	tb.Cleanup(func() { ts.stop(tb) })

	ts.conn = dialTest(tb, ts.addr)
	ts.client = pb.NewStringServiceClient(ts.conn)
	ts.health = healthpb.NewHealthClient(ts.conn)
	return ts
}

// stop interrupts the server's group and fails the test unless it returns
// nil within a generous bound, far below the one-minute shutdown timeout.
func (ts *grpcTestServer) stop(tb testing.TB) {
	tb.Helper()
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case err := <-ts.stopped:
			if err != nil {
				tb.Errorf("run group = %v; want nil", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("gRPC server still running 30s after the interrupt")
		}
	})
}

func dialTest(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient(%q): %v", addr, err)
	}
	tb.Cleanup(func() { conn.Close() }) // closing a connection has nothing to report
	return conn
}

// testContext is a context for one call that cannot hang the test.
func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// callGRPC calls method ("Uppercase" or "Count") with s and returns the
// answer as text.
func callGRPC(ctx context.Context, client pb.StringServiceClient, method, s string) (string, error) {
	if method == "Count" {
		resp, err := client.Count(ctx, &pb.CountRequest{S: s})
		return strconv.FormatInt(resp.GetV(), 10), err
	}
	resp, err := client.Uppercase(ctx, &pb.UppercaseRequest{S: s})
	return resp.GetV(), err
}

func TestGRPCServiceName(t *testing.T) {
	t.Parallel()
	if got := pb.StringService_ServiceDesc.ServiceName; got != grpcServiceName {
		t.Errorf("pb.StringService_ServiceDesc.ServiceName = %q; want grpcServiceName, %q", got, grpcServiceName)
	}
}

func TestGRPCServer(t *testing.T) {
	t.Parallel()
	ts := startGRPCServer(t, stringService{}, nil, grpcOptions{})
	tests := []struct {
		name, method, give, want string
	}{
		{name: "uppercase", method: "Uppercase", give: "hello", want: "HELLO"},
		{name: "uppercase unicode", method: "Uppercase", give: "héllo", want: "HÉLLO"},
		{name: "count", method: "Count", give: "abc", want: "3"},
		{name: "count code points", method: "Count", give: "héllo", want: "5"},
		{name: "count empty string", method: "Count", give: "", want: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := callGRPC(testContext(t), ts.client, tt.method, tt.give)
			if err != nil || got != tt.want {
				t.Errorf("%s(%q) = %q, %v; want %q, nil", tt.method, tt.give, got, err, tt.want)
			}
		})
	}
}

// TestGRPCErrorCodes checks errorStatus's table as gRPC codes: a client
// error explains itself, a server-side failure sends a generic message and
// logs its cause once.
func TestGRPCErrorCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		give     error
		wantCode codes.Code
		wantMsg  string
		wantLogs int // times the log holds the error's text
	}{
		{name: "empty", give: ErrEmpty, wantCode: codes.InvalidArgument, wantMsg: "empty string"},
		{name: "unavailable", give: fmt.Errorf("%w: secret", lb.ErrUnavailable),
			wantCode: codes.Unavailable, wantMsg: statusMessage(503), wantLogs: 1},
		{name: "no endpoints", give: lb.ErrNoEndpoints,
			wantCode: codes.Unavailable, wantMsg: statusMessage(503), wantLogs: 1},
		{name: "breaker open", give: fmt.Errorf("secret: %w", gobreaker.ErrOpenState),
			wantCode: codes.Unavailable, wantMsg: statusMessage(503), wantLogs: 1},
		{name: "limited", give: fmt.Errorf("secret: %w", ratelimit.ErrLimited),
			wantCode: codes.Unavailable, wantMsg: statusMessage(503), wantLogs: 1},
		{name: "every attempt failed", give: fmt.Errorf("%w after 3 attempts: secret", lb.ErrExhausted),
			wantCode: codes.Unavailable, wantMsg: statusMessage(502), wantLogs: 1},
		{name: "instance answered 4xx", give: fmt.Errorf("%w: instance refused: secret", errUpstream),
			wantCode: codes.Unavailable, wantMsg: statusMessage(502), wantLogs: 1},
		{name: "deadline", give: fmt.Errorf("%w after 2 attempts: secret: %w", lb.ErrExhausted, context.DeadlineExceeded),
			wantCode: codes.DeadlineExceeded, wantMsg: statusMessage(504), wantLogs: 1},
		{name: "canceled", give: fmt.Errorf("secret: %w", context.Canceled),
			wantCode: codes.Canceled, wantMsg: statusMessage(statusClientClosedRequest)},
		{name: "other", give: errors.New("internal secret"),
			wantCode: codes.Internal, wantMsg: statusMessage(500), wantLogs: 1},
	}
	errs := make(map[string]error)
	for _, tt := range tests {
		errs[tt.name] = tt.give
	}
	ts := startGRPCServer(t, fakeService{uppercase: func(_ context.Context, s string) (string, error) {
		return "", errs[s]
	}}, nil, grpcOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.client.Uppercase(testContext(t), &pb.UppercaseRequest{S: tt.name})
			st := status.Convert(err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("Uppercase returning %v: status %s %q; want %s %q",
					tt.give, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
	// Every call has returned, so every log line is written. Each error's
	// text is in no other's.
	logs := ts.logs.String()
	for _, tt := range tests {
		if got := strings.Count(logs, tt.give.Error()); got != tt.wantLogs {
			t.Errorf("the log holds %q %d times; want %d\n%s", tt.give, got, tt.wantLogs, logs)
		}
	}
}

// rawCodec sends and receives messages as the bytes they are, so a test
// can put on the wire what no generated type would encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestGRPCRejectsBadMessages sends messages the server must refuse with a
// status and survive. The malformed ones are refused by grpc-go itself,
// before any interceptor or handler, as INTERNAL.
func TestGRPCRejectsBadMessages(t *testing.T) {
	t.Parallel()
	const maxRecvMsgSize = 64
	ts := startGRPCServer(t, stringService{}, nil, grpcOptions{MaxRecvMsgSize: maxRecvMsgSize})
	field := func(s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	}
	tests := []struct {
		name     string
		method   string
		give     []byte
		wantCode codes.Code
	}{
		{name: "invalid UTF-8", method: pb.StringService_Uppercase_FullMethodName, give: field("a\xffb"),
			wantCode: codes.Internal},
		{name: "invalid UTF-8 count", method: pb.StringService_Count_FullMethodName, give: field("\xc3"),
			wantCode: codes.Internal},
		{name: "truncated field", method: pb.StringService_Uppercase_FullMethodName,
			give: []byte{0x0a, 0x05, 'a'}, wantCode: codes.Internal},
		{name: "bad wire type", method: pb.StringService_Count_FullMethodName, give: []byte{0x0f, 0x01},
			wantCode: codes.Internal},
		{name: "oversized", method: pb.StringService_Uppercase_FullMethodName,
			give: field(strings.Repeat("a", maxRecvMsgSize)), wantCode: codes.ResourceExhausted},
		{name: "unknown field is ignored", method: pb.StringService_Count_FullMethodName,
			give:     protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 1),
			wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			var reply []byte
			err := ts.conn.Invoke(ctx, tt.method, tt.give, &reply, grpc.ForceCodec(rawCodec{}))
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("%s with % x: %v; want code %s", tt.method, tt.give, err, tt.wantCode)
			}
			if got, err := callGRPC(ctx, ts.client, "Uppercase", "still"); err != nil || got != "STILL" {
				t.Errorf("Uppercase after it = %q, %v; want %q, nil", got, err, "STILL")
			}
		})
	}
}

func TestGRPCExpiredDeadlineRunsNothing(t *testing.T) {
	t.Parallel()
	ts := startGRPCServer(t, stringService{}, nil, grpcOptions{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := ts.client.Uppercase(ctx, &pb.UppercaseRequest{S: "hello"})
	if got := status.Code(err); got != codes.DeadlineExceeded {
		t.Errorf("Uppercase with an expired deadline: %v; want code %s", err, codes.DeadlineExceeded)
	}
	for _, failed := range []string{"false", "true"} {
		got := metricValue(t, ts.reg, "stringsvc_requests_total", "method", "uppercase", "error", failed)
		if got != 0 {
			t.Errorf("stringsvc_requests_total{method=uppercase,error=%s} = %v; want 0", failed, got)
		}
	}
}

// TestGRPCMetrics checks that gRPC calls reach the service middlewares and
// are counted per method in go-grpc-middleware's names and labels.
func TestGRPCMetrics(t *testing.T) {
	t.Parallel()
	ts := startGRPCServer(t, stringService{}, nil, grpcOptions{})
	ctx := testContext(t)
	calls := []struct {
		method, give string
		wantCode     codes.Code
	}{
		{method: "Uppercase", give: "a", wantCode: codes.OK},
		{method: "Uppercase", give: "", wantCode: codes.InvalidArgument},
		{method: "Count", give: "abc", wantCode: codes.OK},
	}
	for _, c := range calls {
		if _, err := callGRPC(ctx, ts.client, c.method, c.give); status.Code(err) != c.wantCode {
			t.Fatalf("%s(%q): %v; want code %s", c.method, c.give, err, c.wantCode)
		}
	}
	handled := []struct {
		method, code string
		want         float64
	}{
		{method: "Uppercase", code: "OK", want: 1},
		{method: "Uppercase", code: "InvalidArgument", want: 1},
		{method: "Count", code: "OK", want: 1},
		{method: "Count", code: "Internal", want: 0},
	}
	for _, h := range handled {
		labels := []string{"grpc_type", "unary", "grpc_service", grpcServiceName,
			"grpc_method", h.method, "grpc_code", h.code}
		if gatherSeries(t, ts.reg, "grpc_server_handled_total", labels...) == nil {
			t.Errorf("no grpc_server_handled_total series %v; want one (each method and code starts at 0)", labels)
		}
		if got := metricValue(t, ts.reg, "grpc_server_handled_total", labels...); got != h.want {
			t.Errorf("grpc_server_handled_total%v = %v; want %v", labels, got, h.want)
		}
	}
	if got, _ := histogram(t, ts.reg, "grpc_server_handling_seconds", "grpc_method", "Uppercase"); got != 2 {
		t.Errorf("grpc_server_handling_seconds{grpc_method=Uppercase} count = %d; want 2", got)
	}
	if gatherSeries(t, ts.reg, "grpc_server_handled_total", "grpc_type", "server_stream",
		"grpc_service", "grpc.health.v1.Health", "grpc_method", "Watch") == nil {
		t.Errorf("no grpc_server_handled_total series for grpc.health.v1.Health/Watch; want one")
	}
	service := []struct {
		method, failed string
		want           float64
	}{
		{method: "uppercase", failed: "false", want: 1},
		{method: "uppercase", failed: "true", want: 1},
		{method: "count", failed: "false", want: 1},
	}
	for _, s := range service {
		got := metricValue(t, ts.reg, "stringsvc_requests_total", "method", s.method, "error", s.failed)
		if got != s.want {
			t.Errorf("stringsvc_requests_total{method=%s,error=%s} = %v; want %v", s.method, s.failed, got, s.want)
		}
	}
}

type (
	watchStream   = grpc.ServerStreamingClient[healthpb.HealthCheckResponse]
	servingStatus = healthpb.HealthCheckResponse_ServingStatus
)

// recvStatus receives the next status from a Watch stream.
func recvStatus(tb testing.TB, w watchStream) servingStatus {
	tb.Helper()
	resp, err := w.Recv()
	if err != nil {
		tb.Fatalf("Watch: Recv: %v", err)
	}
	return resp.GetStatus()
}

func checkStatus(ctx context.Context, hc healthpb.HealthClient, service string) (servingStatus, error) {
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	return resp.GetStatus(), err
}

func TestGRPCHealthFollowsReady(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	ts := startGRPCServer(t, stringService{}, ready.Load, grpcOptions{})
	ctx := testContext(t)
	const serving, notServing = healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING
	services := []string{"", grpcServiceName}
	waitStatus := func(want servingStatus) {
		t.Helper()
		for _, service := range services {
			testenv.PollUntil(t, 10*time.Second, fmt.Sprintf("Check(%q) is %s", service, want), func() bool {
				got, err := checkStatus(ctx, ts.health, service)
				return err == nil && got == want
			})
		}
	}
	waitStatus(serving)

	watch, err := ts.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: grpcServiceName})
	if err != nil {
		t.Fatalf("Watch(%q): %v", grpcServiceName, err)
	}
	if got := recvStatus(t, watch); got != serving {
		t.Fatalf("Watch(%q) first status = %s; want %s", grpcServiceName, got, serving)
	}
	ready.Store(false)
	if got := recvStatus(t, watch); got != notServing {
		t.Errorf("Watch(%q) after ready() turned false = %s; want %s", grpcServiceName, got, notServing)
	}
	waitStatus(notServing)
	ready.Store(true)
	if got := recvStatus(t, watch); got != serving {
		t.Errorf("Watch(%q) after ready() turned true = %s; want %s", grpcServiceName, got, serving)
	}

	_, err = checkStatus(ctx, ts.health, "no.such.Service")
	if got := status.Code(err); got != codes.NotFound {
		t.Errorf("Check(%q): %v; want code %s", "no.such.Service", err, codes.NotFound)
	}
}

// TestGRPCShutdownEndsWatch checks that shutting down tells a watching
// client NOT_SERVING, then ends its stream, so GracefulStop need not wait
// out the shutdown timeout (a minute here) for it.
func TestGRPCShutdownEndsWatch(t *testing.T) {
	t.Parallel()
	ts := startGRPCServer(t, stringService{}, nil, grpcOptions{})
	ctx := testContext(t)
	testenv.PollUntil(t, 10*time.Second, "Check is SERVING", func() bool {
		got, err := checkStatus(ctx, ts.health, "")
		return err == nil && got == healthpb.HealthCheckResponse_SERVING
	})
	tests := []struct {
		name, service string
		wantFirst     servingStatus
		wantAtStop    bool // a NOT_SERVING update when the server stops
	}{
		{name: "serving", service: "", wantFirst: healthpb.HealthCheckResponse_SERVING, wantAtStop: true},
		// SERVICE_UNKNOWN never changes: the stream must end all the same.
		{name: "unknown service", service: "no.such.Service", wantFirst: healthpb.HealthCheckResponse_SERVICE_UNKNOWN},
	}
	watches := make([]watchStream, len(tests))
	for i, tt := range tests {
		w, err := ts.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: tt.service})
		if err != nil {
			t.Fatalf("Watch(%q): %v", tt.service, err)
		}
		if got := recvStatus(t, w); got != tt.wantFirst {
			t.Fatalf("Watch(%q) first status = %s; want %s", tt.service, got, tt.wantFirst)
		}
		watches[i] = w
	}

	ts.stop(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantAtStop {
				want := healthpb.HealthCheckResponse_NOT_SERVING
				if got := recvStatus(t, watches[i]); got != want {
					t.Errorf("Watch(%q) at shutdown = %s; want %s", tt.service, got, want)
				}
			}
			resp, err := watches[i].Recv()
			if got := status.Code(err); got != codes.Unavailable {
				t.Errorf("Watch(%q) after shutdown = %v, %v; want the stream to end with %s",
					tt.service, resp, err, codes.Unavailable)
			}
		})
	}
}

func TestUppercaseGRPCProxy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		give        error // the backend's error; nil: it uppercases
		want        uppercaseResponse
		wantRespErr error // the business error inside the response (errors.Is)
		wantErr     bool
		wantErrIs   error // errors.Is the returned error, when set
	}{
		{name: "ok", want: uppercaseResponse{V: "OK"}},
		{name: "empty string", give: ErrEmpty, wantRespErr: ErrEmpty},
		{name: "other invalid argument", give: badRequestError{err: errors.New("no")},
			wantRespErr: errUpstream},
		{name: "unavailable", give: lb.ErrUnavailable, wantErr: true},
		{name: "internal", give: errors.New("boom"), wantErr: true},
		{name: "backend timed out", give: fmt.Errorf("%w: %w", lb.ErrExhausted, context.DeadlineExceeded),
			wantErr: true, wantErrIs: context.DeadlineExceeded},
	}
	errs := make(map[string]error)
	for _, tt := range tests {
		errs[tt.name] = tt.give
	}
	backend := startGRPCServer(t, fakeService{uppercase: func(ctx context.Context, s string) (string, error) {
		if err := errs[s]; err != nil {
			return "", err
		}
		return stringService{}.Uppercase(ctx, s)
	}}, nil, grpcOptions{})
	conn, err := dialGRPCInstance(backend.addr)
	if err != nil {
		t.Fatalf("dialGRPCInstance(%q): %v", backend.addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	proxy := makeUppercaseGRPCProxy(conn)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			response, err := proxy(testContext(t), uppercaseRequest{S: tt.name})
			if tt.wantErr {
				if err == nil || (tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs)) {
					t.Errorf("proxy(%q) = %v, %v; want an error (is %v)", tt.name, response, err, tt.wantErrIs)
				}
				return
			}
			resp, ok := response.(uppercaseResponse)
			if err != nil || !ok || resp.V != tt.want.V || !errors.Is(resp.err, tt.wantRespErr) ||
				(tt.wantRespErr == nil && resp.err != nil) {
				t.Errorf("proxy(%q) = %#v, %v; want uppercaseResponse{V: %q, err: %v}, nil",
					tt.name, response, err, tt.want.V, tt.wantRespErr)
			}
		})
	}
}

func TestUppercaseGRPCProxyInstanceDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	conn, err := dialGRPCInstance(addr)
	if err != nil {
		t.Fatalf("dialGRPCInstance(%q): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	response, err := makeUppercaseGRPCProxy(conn)(testContext(t), uppercaseRequest{S: "a"})
	if err == nil || errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), codes.Unavailable.String()) {
		t.Errorf("proxy to a closed port = %v, %v; want an %s error", response, err, codes.Unavailable)
	}
}

// TestUppercaseGRPCProxyDeadline checks that the caller's deadline reaches
// the backend, and that running out of it is a context error.
func TestUppercaseGRPCProxyDeadline(t *testing.T) {
	t.Parallel()
	deadlines := make(chan time.Time, 1)
	backend := startGRPCServer(t, fakeService{uppercase: func(ctx context.Context, s string) (string, error) {
		if s == "block" {
			<-ctx.Done()
			return "", ctx.Err()
		}
		d, _ := ctx.Deadline() // the zero time when there is none
		deadlines <- d
		return stringService{}.Uppercase(ctx, s)
	}}, nil, grpcOptions{})
	conn, err := dialGRPCInstance(backend.addr)
	if err != nil {
		t.Fatalf("dialGRPCInstance(%q): %v", backend.addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	proxy := makeUppercaseGRPCProxy(conn)

	t.Run("propagates", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		want, _ := ctx.Deadline()
		if _, err := proxy(ctx, uppercaseRequest{S: "a"}); err != nil {
			t.Fatalf("proxy: %v", err)
		}
		got := <-deadlines
		// The backend counts the grpc-timeout from when the call arrives.
		if d := got.Sub(want).Abs(); got.IsZero() || d > 30*time.Second {
			t.Errorf("backend deadline = %v; want about %v", got, want)
		}
	})
	t.Run("expires", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		response, err := proxy(ctx, uppercaseRequest{S: "block"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("proxy past its deadline = %v, %v; want an error that is context.DeadlineExceeded", response, err)
		}
	})
}

// goTool returns the path of a program `go install` puts on PATH, in
// $(go env GOBIN) or $(go env GOPATH)/bin. A missing one skips the test,
// or fails it under CI=true.
func goTool(tb testing.TB, name string) string {
	tb.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n") // GOBIN's line may be empty
		dirs := lines[:1]
		if len(lines) > 1 {
			for _, gopath := range filepath.SplitList(lines[1]) {
				dirs = append(dirs, filepath.Join(gopath, "bin"))
			}
		}
		for _, dir := range dirs {
			if path, err := exec.LookPath(filepath.Join(dir, name)); dir != "" && err == nil {
				return path
			}
		}
	}
	testenv.Missing(tb, fmt.Sprintf("%s is not on PATH nor in $(go env GOPATH)/bin; run scripts/install-grpc-tools.sh", name))
	return ""
}

// runTool runs a tool to completion and returns its combined output.
func runTool(tb testing.TB, bin string, args ...string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func TestGRPCurl(t *testing.T) {
	t.Parallel()
	grpcurl := goTool(t, "grpcurl")
	ts := startGRPCServer(t, stringService{}, nil, grpcOptions{})

	out, err := runTool(t, grpcurl, "-plaintext", ts.addr, "list")
	if err != nil {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	for _, want := range []string{grpcServiceName, "grpc.health.v1.Health"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("grpcurl list = %q; want it to list %s", out, want)
		}
	}

	tests := []struct {
		name, method, give string
		want               map[string]string // the JSON answer; nil: an error
		wantOut            []string          // in the output, for an error
	}{
		{name: "uppercase", method: "Uppercase", give: `{"s":"héllo"}`, want: map[string]string{"v": "HÉLLO"}},
		// protojson writes an int64 as a string.
		{name: "count", method: "Count", give: `{"s":"héllo"}`, want: map[string]string{"v": "5"}},
		{name: "empty", method: "Uppercase", give: `{"s":""}`,
			wantOut: []string{"Code: InvalidArgument", "Message: empty string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runTool(t, grpcurl, "-plaintext", "-d", tt.give, ts.addr, grpcServiceName+"/"+tt.method)
			if tt.want == nil {
				for _, want := range tt.wantOut {
					if err == nil || !strings.Contains(out, want) {
						t.Errorf("grpcurl %s %s = %v, %q; want an error saying %q", tt.method, tt.give, err, out, want)
					}
				}
				return
			}
			var got map[string]string
			if err != nil {
				t.Fatalf("grpcurl %s %s: %v\n%s", tt.method, tt.give, err, out)
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != len(tt.want) || got["v"] != tt.want["v"] {
				t.Errorf("grpcurl %s %s = %q (%v); want %v", tt.method, tt.give, out, err, tt.want)
			}
		})
	}
}

func TestGRPCHealthProbe(t *testing.T) {
	t.Parallel()
	probe := goTool(t, "grpc-health-probe")
	var ready atomic.Bool
	ready.Store(true)
	ts := startGRPCServer(t, stringService{}, ready.Load, grpcOptions{})
	// probeSays runs the probe until it prints want, the status of service.
	probeSays := func(service, want string) {
		t.Helper()
		var out string
		testenv.PollUntil(t, 10*time.Second, fmt.Sprintf("grpc-health-probe -service=%q says %s", service, want), func() bool {
			var err error
			out, err = runTool(t, probe, "-addr="+ts.addr, "-service="+service)
			var exitErr *exec.ExitError
			switch {
			case want == "SERVING":
				return err == nil && strings.Contains(out, "status: SERVING")
			case errors.As(err, &exitErr) && exitErr.ExitCode() == 4: // the probe's "unhealthy"
				return strings.Contains(out, want)
			}
			return false
		})
	}
	for _, service := range []string{"", grpcServiceName} {
		probeSays(service, "SERVING")
	}
	ready.Store(false)
	for _, service := range []string{"", grpcServiceName} {
		probeSays(service, "NOT_SERVING")
	}
}
