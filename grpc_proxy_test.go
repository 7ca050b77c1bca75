package main

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"stringsvc/internal/testenv"
	"stringsvc/pb"
)

// The proxy with gRPC upstreams, and the four pairings of inbound and
// outbound transports. The backends are our own stack served by
// startGRPCServer (grpc_test.go); proxies are newTestProxy over grpc://
// instances, or the whole program.

// grpcBackends starts n gRPC backends of svc and returns them with their
// grpc:// instances.
func grpcBackends(tb testing.TB, n int, svc StringService) ([]*grpcTestServer, []string) {
	tb.Helper()
	var servers []*grpcTestServer
	var instances []string
	for range n {
		ts := startGRPCServer(tb, svc, nil, grpcOptions{})
		servers = append(servers, ts)
		instances = append(instances, "grpc://"+ts.addr)
	}
	return servers, instances
}

// uppercaseCalls is how many Uppercase calls ts's service answered.
func uppercaseCalls(tb testing.TB, ts *grpcTestServer) float64 {
	tb.Helper()
	return metricValue(tb, ts.reg, "stringsvc_requests_total", "method", "uppercase", "error", "false")
}

func TestGRPCUpstreamRoundRobinAndDeadBackend(t *testing.T) {
	t.Parallel()
	servers, instances := grpcBackends(t, 3, stringService{})
	p := newTestProxy(t, testProxyConfig(), instances...)
	for range 6 {
		p.mustUppercase(t, "hello")
	}
	for _, ts := range servers {
		if got := uppercaseCalls(t, ts); got != 2 {
			t.Errorf("gRPC backend %s answered %v of 6; want 2, its round-robin share", ts.addr, got)
		}
	}
	servers[0].stop(t) // dead: its turns are retried on the others
	for range 9 {
		p.mustUppercase(t, "hello")
	}
	if got := p.outcomes(t, instances[0], "error"); got < 1 {
		t.Errorf("error outcomes of the stopped gRPC backend = %v; want at least 1", got)
	}
}

func TestGRPCUpstreamAllDead(t *testing.T) {
	t.Parallel()
	servers, instances := grpcBackends(t, 2, stringService{})
	cfg := testProxyConfig()
	cfg.Attempts = 2
	cfg.BreakerFailures = 1
	p := newTestProxy(t, cfg, instances...)
	for _, ts := range servers {
		ts.stop(t)
	}
	resp, body := p.uppercase(t, "hello")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST /uppercase with every gRPC backend down = %d %q; want 502", resp.StatusCode, body)
	}
	resp, body = p.uppercase(t, "hello") // now every breaker is open
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /uppercase with every breaker open = %d %q; want 503", resp.StatusCode, body)
	}
}

func TestGRPCUpstreamSlowBackend(t *testing.T) {
	t.Parallel()
	left := make(chan time.Duration, 10) // the time its context had, on arrival
	slow := fakeService{uppercase: func(ctx context.Context, s string) (string, error) {
		deadline, ok := ctx.Deadline()
		if !ok {
			left <- -1
		} else {
			left <- time.Until(deadline)
		}
		<-ctx.Done() // answers nothing until its caller gives up
		return "", ctx.Err()
	}}
	slowServer := startGRPCServer(t, slow, nil, grpcOptions{})
	_, fast := grpcBackends(t, 1, stringService{})
	cfg := testProxyConfig()
	cfg.AttemptTimeout = 100 * time.Millisecond
	p := newTestProxy(t, cfg, "grpc://"+slowServer.addr, fast[0])
	for range 4 { // every other one tries the slow backend first
		p.mustUppercase(t, "hello")
	}
	// The attempt's deadline travelled with it (grpc-timeout).
	if got := <-left; got <= 0 || got > cfg.AttemptTimeout {
		t.Errorf("the slow gRPC backend's context had %v left on arrival; want a deadline within the attempt's %v",
			got, cfg.AttemptTimeout)
	}
	if got := p.outcomes(t, "grpc://"+slowServer.addr, "timeout"); got < 1 {
		t.Errorf("timeout outcomes of the slow gRPC backend = %v; want at least 1", got)
	}
}

func TestGRPCUpstreamBusinessErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	counting := fakeService{uppercase: func(ctx context.Context, s string) (string, error) {
		calls.Add(1)
		return stringService{}.Uppercase(ctx, s)
	}}
	_, instances := grpcBackends(t, 2, counting)
	p := newTestProxy(t, testProxyConfig(), instances...)
	resp, body := p.uppercase(t, "")
	if resp.StatusCode != http.StatusBadRequest || body != `{"v":"","err":"empty string"}` {
		t.Errorf("POST /uppercase \"\" via gRPC upstreams = %d %q; want 400 empty string", resp.StatusCode, body)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("gRPC backends were called %d times for a business error; want 1 (not retried)", got)
	}
	if got := p.outcomes(t, instances[0], "business_error") + p.outcomes(t, instances[1], "business_error"); got != 1 {
		t.Errorf("business_error outcomes = %v; want 1", got)
	}
}

func TestGRPCUpstreamClientDisconnectCancels(t *testing.T) {
	t.Parallel()
	received, canceled := make(chan struct{}, 1), make(chan error, 1)
	hanging := fakeService{uppercase: func(ctx context.Context, s string) (string, error) {
		received <- struct{}{}
		<-ctx.Done()
		canceled <- ctx.Err()
		return "", ctx.Err()
	}}
	ts := startGRPCServer(t, hanging, nil, grpcOptions{})
	cfg := testProxyConfig()
	cfg.AttemptTimeout, cfg.Timeout = time.Minute, time.Minute
	p := newTestProxy(t, cfg, "grpc://"+ts.addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/uppercase", strings.NewReader(`{"s":"hi"}`))
		if err != nil {
			done <- err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	receive(t, received, "the call at the gRPC backend")
	cancel() // the client goes away
	select {
	case err := <-canceled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the gRPC backend's context ended with %v; want it canceled", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the gRPC backend still works %v after its client went away", waitTimeout)
	}
	<-done
}

// grpcListeningLine is the log line run writes once it has bound
// -grpc.listen.
var grpcListeningLine = regexp.MustCompile(`msg="grpc listening" addr=(\S+)`)

// TestGRPCPairings runs the program: a backend serving HTTP and gRPC, and
// proxies in front of it over each transport, each called over each.
func TestGRPCPairings(t *testing.T) {
	t.Parallel()
	backend := startStringsvc(t, "-grpc.listen", "127.0.0.1:0")
	backendGRPC := backend.stderr.WaitMatch(t, grpcListeningLine, backend.exited, waitTimeout)[1]
	toGRPC := startStringsvc(t, "-proxy", "grpc://"+backendGRPC, "-grpc.listen", "127.0.0.1:0")
	toHTTP := startStringsvc(t, "-proxy", backend.addr, "-grpc.listen", "127.0.0.1:0")
	client := &http.Client{Timeout: waitTimeout}
	for _, tt := range []struct {
		name  string
		proxy *stringsvcRun
	}{
		{"gRPC out", toGRPC},
		{"HTTP out", toHTTP},
	} {
		resp, body := send(t, client, http.MethodPost, "http://"+tt.proxy.addr+"/uppercase", `{"s":"héllo"}`)
		if resp.StatusCode != http.StatusOK || body != "{\"v\":\"HÉLLO\"}\n" {
			t.Errorf("HTTP in, %s: POST /uppercase = %d %q; want 200 HÉLLO", tt.name, resp.StatusCode, body)
		}
		addr := tt.proxy.stderr.WaitMatch(t, grpcListeningLine, tt.proxy.exited, waitTimeout)[1]
		grpcClient := pb.NewStringServiceClient(dialTest(t, addr))
		testenv.PollUntil(t, waitTimeout, "gRPC in, "+tt.name+": the proxy is ready", func() bool {
			_, err := grpcClient.Uppercase(testContext(t), &pb.UppercaseRequest{S: "x"})
			return status.Code(err) != codes.Unavailable
		})
		got, err := grpcClient.Uppercase(testContext(t), &pb.UppercaseRequest{S: "héllo"})
		if err != nil || got.GetV() != "HÉLLO" {
			t.Errorf("gRPC in, %s: Uppercase(héllo) = %q, %v; want HÉLLO", tt.name, got.GetV(), err)
		}
		_, err = grpcClient.Uppercase(testContext(t), &pb.UppercaseRequest{S: ""})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "empty string" {
			t.Errorf("gRPC in, %s: Uppercase(\"\") = %v; want InvalidArgument empty string", tt.name, err)
		}
	}
}

// TestProgramGRPCDrain runs the built binary as a proxy with a gRPC
// upstream and a gRPC server: grpcurl sees the service by reflection, and
// SIGTERM lets a call in flight finish before the process exits 0.
func TestProgramGRPCDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	grpcurl := goTool(t, "grpcurl")
	bin := buildBinary(t)
	gate, received := make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	blocking := fakeService{uppercase: func(ctx context.Context, s string) (string, error) {
		received <- struct{}{}
		<-gate
		return strings.ToUpper(s), nil
	}}
	backend := startGRPCServer(t, blocking, nil, grpcOptions{})
	proxy := startProcess(t, bin, "-proxy", "grpc://"+backend.addr, "-grpc.listen", "127.0.0.1:0",
		"-proxy.attempt-timeout", "10s", "-proxy.timeout", "20s")
	grpcAddr := proxy.Out.WaitMatch(t, grpcListeningLine, proxy.Exited(), waitTimeout)[1]

	out, err := runTool(t, grpcurl, "-plaintext", grpcAddr, "list")
	if err != nil || !strings.Contains(out, grpcServiceName+"\n") {
		t.Fatalf("grpcurl list against the binary = %v, %q; want %s listed", err, out, grpcServiceName)
	}
	out, err = runTool(t, grpcurl, "-plaintext", "-d", `{"s":"abc"}`, grpcAddr, grpcServiceName+"/Count")
	if err != nil || !strings.Contains(out, `"v": "3"`) {
		t.Errorf("grpcurl Count abc against the binary = %v, %q; want v 3", err, out)
	}

	client := pb.NewStringServiceClient(dialTest(t, grpcAddr))
	answer := make(chan error, 1)
	go func() {
		resp, err := client.Uppercase(testContext(t), &pb.UppercaseRequest{S: "drain"})
		if err == nil && resp.GetV() != "DRAIN" {
			err = errors.New("answer " + resp.GetV())
		}
		answer <- err
	}()
	receive(t, received, "the in-flight call at the blocking gRPC backend")
	proxy.Signal(t, syscall.SIGTERM)
	proxy.Out.WaitMatch(t, regexp.MustCompile(`msg="shutting down"`), proxy.Exited(), waitTimeout)
	release()
	select {
	case err := <-answer:
		if err != nil {
			t.Errorf("in-flight gRPC Uppercase across SIGTERM = %v; want DRAIN", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("in-flight gRPC call not answered %v after the backend was released", waitTimeout)
	}
	if err := proxy.Wait(t, waitTimeout); err != nil {
		t.Errorf("proxy exited with %v after SIGTERM; want status 0\n%s", err, proxy.Out)
	}
}

// TestProgramHealthDuringDrainDelay runs the built binary with
// -shutdown.delay: after SIGTERM, grpc-health-probe sees NOT_SERVING and
// /readyz answers 503 while both servers still serve, then it exits 0.
func TestProgramHealthDuringDrainDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	probe := goTool(t, "grpc-health-probe")
	bin := buildBinary(t)
	p := startProcess(t, bin, "-grpc.listen", "127.0.0.1:0", "-shutdown.delay", "5s")
	grpcAddr := p.Out.WaitMatch(t, grpcListeningLine, p.Exited(), waitTimeout)[1]
	probeSays := func(want string) bool {
		out, err := runTool(t, probe, "-addr="+grpcAddr, "-service="+grpcServiceName)
		if want == "SERVING" {
			return err == nil && strings.Contains(out, "status: SERVING")
		}
		var exitErr *exec.ExitError // the probe's "unhealthy" is exit status 4
		return errors.As(err, &exitErr) && exitErr.ExitCode() == 4 && strings.Contains(out, want)
	}
	testenv.PollUntil(t, waitTimeout, "grpc-health-probe says SERVING", func() bool { return probeSays("SERVING") })

	p.Signal(t, syscall.SIGTERM)
	p.Out.WaitMatch(t, regexp.MustCompile(`msg="not ready, serving on before the drain"`), p.Exited(), waitTimeout)
	if !probeSays("NOT_SERVING") {
		t.Errorf("grpc-health-probe during -shutdown.delay: not NOT_SERVING")
	}
	if got := getStatus(t, p.addr, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz during -shutdown.delay = %d; want 503", got)
	}
	client := &http.Client{Timeout: waitTimeout}
	if resp, body := send(t, client, http.MethodPost, "http://"+p.addr+"/uppercase", `{"s":"still"}`); resp.StatusCode != http.StatusOK {
		t.Errorf("POST /uppercase during -shutdown.delay = %d %q; want 200 (still serving)", resp.StatusCode, body)
	}
	client.CloseIdleConnections()
	if err := p.Wait(t, waitTimeout+5*time.Second); err != nil {
		t.Errorf("exit after SIGTERM = %v; want status 0\n%s", err, p.Out)
	}
}
