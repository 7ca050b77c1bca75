package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"stringsvc/internal/testenv"
	"stringsvc/pb"
)

// End-to-end tests of tracing: real proxies and backends in-process, each
// exporting to a real OTLP/HTTP receiver (otlpreceiver_test.go). A request
// carries the client's traceparent; the test asserts that proxy and
// backend add to one trace with the right parent links, names, attributes
// and statuses. The runs are stopped before the spans are read: what
// arrives is what the graceful shutdown flushed.

const (
	spanServer = tracepb.Span_SPAN_KIND_SERVER
	spanClient = tracepb.Span_SPAN_KIND_CLIENT
	statusOK   = tracepb.Status_STATUS_CODE_UNSET // neither Ok nor Error: what a success leaves
	statusErr  = tracepb.Status_STATUS_CODE_ERROR
)

// traceGRPCListening is the log line run writes once it has bound -grpc.listen.
var traceGRPCListening = regexp.MustCompile(`msg="grpc listening" addr=(\S+)`)

// startStringsvcEnv runs the program in-process as startStringsvc does,
// with env as its whole environment and request logging on.
func startStringsvcEnv(tb testing.TB, env map[string]string, args ...string) *stringsvcRun {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &stringsvcRun{stderr: new(testenv.Buffer), cancel: cancel, exited: make(chan struct{})}
	all := append([]string{"-listen", "127.0.0.1:0", "-log.flush-interval", "10ms"}, args...)
	go func() {
		defer close(r.exited)
		r.err = run(ctx, all, func(k string) string { return env[k] }, io.Discard, r.stderr)
	}()
	tb.Cleanup(func() {
		if err := r.stop(tb); err != nil {
			tb.Errorf("stringsvc %v: run returned %v\n%s", args, err, r.stderr)
		}
	})
	r.addr = r.stderr.WaitMatch(tb, listeningLine, r.exited, 20*time.Second)[1]
	return r
}

// traceparent is a sampled (or not) W3C traceparent of trace n, sent by a
// client span of its own.
type traceparent struct {
	traceID, spanID string
	sampled         bool
}

func clientTrace(n int, sampled bool) traceparent {
	return traceparent{fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", n), fmt.Sprintf("00f067aa0ba9%04x", n), sampled}
}

func (tp traceparent) String() string {
	flags := "00"
	if tp.sampled {
		flags = "01"
	}
	return "00-" + tp.traceID + "-" + tp.spanID + "-" + flags
}

// postTraced POSTs body to url with tp (none if zero) and returns the
// answer's status and body.
func postTraced(tb testing.TB, url, body string, tp traceparent) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	if tp.traceID != "" {
		req.Header.Set("Traceparent", tp.String())
		req.Header.Set("Tracestate", "client=1")
	}
	client := &http.Client{Timeout: waitTimeout}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("POST %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// spansOf returns the spans of service with kind.
func spansOf(spans []otlpSpan, service string, kind tracepb.Span_SpanKind) []otlpSpan {
	var out []otlpSpan
	for _, s := range spans {
		if s.service == service && s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

// oneSpan returns the one span of service with kind, failing the test if
// there is not exactly one.
func oneSpan(tb testing.TB, spans []otlpSpan, service string, kind tracepb.Span_SpanKind) otlpSpan {
	tb.Helper()
	found := spansOf(spans, service, kind)
	if len(found) != 1 {
		tb.Fatalf("%d %s spans of %s; want 1. The trace:\n%s", len(found), kind, service, spanList(spans))
	}
	return found[0]
}

func spanList(spans []otlpSpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %v\n", s)
	}
	return b.String()
}

// checkSpan checks a span's name, parent, status and the attributes in want.
func checkSpan(tb testing.TB, s otlpSpan, name, parent string, code tracepb.Status_StatusCode, want map[string]string) {
	tb.Helper()
	if s.Name != name {
		tb.Errorf("%s %s span name = %q; want %q", s.service, s.Kind, s.Name, name)
	}
	if s.parentID() != parent {
		tb.Errorf("%s %s span %q parent = %q; want %q", s.service, s.Kind, s.Name, s.parentID(), parent)
	}
	if got := s.GetStatus().GetCode(); got != code {
		tb.Errorf("%s %s span %q status = %v %q; want %v", s.service, s.Kind, s.Name, got, s.GetStatus().GetMessage(), code)
	}
	got := s.attrs()
	for k, v := range want {
		if got[k] != v {
			tb.Errorf("%s %s span %q attribute %s = %q; want %q (all: %v)", s.service, s.Kind, s.Name, k, got[k], v, got)
		}
	}
}

// waitSpans waits until trace traceID has n spans and returns them.
func waitSpans(tb testing.TB, rcv *otlpReceiver, traceID string, n int) []otlpSpan {
	tb.Helper()
	testenv.PollUntil(tb, waitTimeout, fmt.Sprintf("%d spans of trace %s received", n, traceID), func() bool {
		return len(rcv.trace(traceID)) >= n
	})
	return rcv.trace(traceID)
}

// logLine returns the line of log holding substr, failing the test if none does.
func logLine(tb testing.TB, log, substr string) string {
	tb.Helper()
	for line := range strings.Lines(log) {
		if strings.Contains(line, substr) {
			return line
		}
	}
	tb.Fatalf("no log line with %q in:\n%s", substr, log)
	return ""
}

func TestTracingHTTPEndToEnd(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	timeouts := []string{"-proxy.attempt-timeout", "5s", "-proxy.timeout", "10s", "-proxy.retry-backoff", "0"}
	// The backend takes the standard environment; the proxies, the flags.
	backend := startStringsvcEnv(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL, "OTEL_SERVICE_NAME": "backend"})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	failingAddr := strings.TrimPrefix(failing.URL, "http://")
	dead := testenv.FreeAddr(t)
	proxy := startStringsvcEnv(t, nil, append([]string{"-otel.endpoint", rcv.URL, "-service.name", "proxy",
		"-proxy", backend.addr}, timeouts...)...)
	retrying := startStringsvcEnv(t, nil, append([]string{"-otel.endpoint", rcv.URL + "/v1/traces",
		"-service.name", "retrying", "-proxy", failingAddr + "," + backend.addr, "-proxy.balancer", "roundrobin",
		"-proxy.attempts", "2"}, timeouts...)...)
	broken := startStringsvcEnv(t, nil, append([]string{"-otel.endpoint", rcv.URL, "-service.name", "broken",
		"-proxy", dead, "-proxy.attempts", "1"}, timeouts...)...)

	ok, business, retried1, retried2 := clientTrace(1, true), clientTrace(2, true), clientTrace(3, true), clientTrace(4, true)
	failed, unsampled := clientTrace(5, true), clientTrace(6, false)
	requests := []struct {
		to         *stringsvcRun
		body       string
		tp         traceparent
		wantStatus int
	}{
		{proxy, `{"s":"hello"}`, ok, http.StatusOK},
		{proxy, `{"s":""}`, business, http.StatusBadRequest},
		{retrying, `{"s":"again"}`, retried1, http.StatusOK},
		{retrying, `{"s":"again"}`, retried2, http.StatusOK},
		{broken, `{"s":"lost"}`, failed, http.StatusBadGateway},
		{proxy, `{"s":"unsampled"}`, unsampled, http.StatusOK},
		{proxy, `{"s":"rootless"}`, traceparent{}, http.StatusOK},
	}
	for _, r := range requests {
		if status, body := postTraced(t, "http://"+r.to.addr+"/uppercase", r.body, r.tp); status != r.wantStatus {
			t.Fatalf("POST /uppercase %s with traceparent %q = %d %q; want %d", r.body, r.tp, status, body, r.wantStatus)
		}
	}
	for _, r := range []*stringsvcRun{proxy, retrying, broken, backend} {
		if err := r.stop(t); err != nil {
			t.Fatalf("run returned %v\n%s", err, r.stderr)
		}
	}

	t.Run("success", func(t *testing.T) {
		spans := waitSpans(t, rcv, ok.traceID, 3)
		ps, pc, bs := oneSpan(t, spans, "proxy", spanServer), oneSpan(t, spans, "proxy", spanClient),
			oneSpan(t, spans, "backend", spanServer)
		checkSpan(t, ps, "POST /uppercase", ok.spanID, statusOK, map[string]string{
			"http.request.method": "POST", "http.route": "/uppercase", "url.path": "/uppercase", "url.scheme": "http",
			"http.response.status_code": "200", "server.address": "127.0.0.1",
			"server.port": strconv.Itoa(portOf(t, proxy.addr)), "network.protocol.version": "1.1",
			"client.address": "127.0.0.1", "user_agent.original": "Go-http-client/1.1",
		})
		checkSpan(t, pc, "POST /uppercase", ps.spanID(), statusOK, map[string]string{
			"http.request.method": "POST", "url.full": "http://" + backend.addr + "/uppercase",
			"server.address": "127.0.0.1", "server.port": strconv.Itoa(portOf(t, backend.addr)),
			"http.response.status_code": "200", "stringsvc.upstream": backend.addr,
			"stringsvc.attempt.number": "1", "stringsvc.attempt.retry": "false", "stringsvc.attempt.hedge": "false",
			"stringsvc.attempt.outcome": "success",
		})
		checkSpan(t, bs, "POST /uppercase", pc.spanID(), statusOK, map[string]string{
			"http.route": "/uppercase", "http.response.status_code": "200", "user_agent.original": "stringsvc",
		})
		if bs.TraceState != "client=1" {
			t.Errorf("backend span's tracestate = %q; want the client's, client=1", bs.TraceState)
		}
		// Each side logs the request with the IDs of its own server span.
		want := "trace_id=" + ok.traceID + " span_id=" + ps.spanID()
		if line := logLine(t, proxy.stderr.String(), "input=hello "); !strings.Contains(line, want) {
			t.Errorf("proxy's log line %q; want it to end with %q", line, want)
		}
		want = "trace_id=" + ok.traceID + " span_id=" + bs.spanID()
		if line := logLine(t, backend.stderr.String(), "input=hello "); !strings.Contains(line, want) {
			t.Errorf("backend's log line %q; want it to end with %q", line, want)
		}
	})

	t.Run("business error is no span error", func(t *testing.T) {
		spans := waitSpans(t, rcv, business.traceID, 3)
		ps, pc, bs := oneSpan(t, spans, "proxy", spanServer), oneSpan(t, spans, "proxy", spanClient),
			oneSpan(t, spans, "backend", spanServer)
		checkSpan(t, ps, "POST /uppercase", business.spanID, statusOK, map[string]string{"http.response.status_code": "400"})
		checkSpan(t, pc, "POST /uppercase", ps.spanID(), statusOK, map[string]string{
			"http.response.status_code": "400", "stringsvc.attempt.outcome": "business_error"})
		checkSpan(t, bs, "POST /uppercase", pc.spanID(), statusOK, map[string]string{"http.response.status_code": "400"})
	})

	t.Run("retry after a 5xx", func(t *testing.T) {
		// Round-robin over two instances: whichever order they are in,
		// some request starts at the failing one.
		retries := 0
		for _, tp := range []traceparent{retried1, retried2} {
			spans := waitSpans(t, rcv, tp.traceID, 3)
			ps, bs := oneSpan(t, spans, "retrying", spanServer), oneSpan(t, spans, "backend", spanServer)
			checkSpan(t, ps, "POST /uppercase", tp.spanID, statusOK, map[string]string{"http.response.status_code": "200"})
			attempts := spansOf(spans, "retrying", spanClient)
			last := attempts[len(attempts)-1]
			checkSpan(t, last, "POST /uppercase", ps.spanID(), statusOK, map[string]string{
				"stringsvc.upstream": backend.addr, "stringsvc.attempt.number": strconv.Itoa(len(attempts)),
				"stringsvc.attempt.retry": strconv.FormatBool(len(attempts) > 1), "stringsvc.attempt.outcome": "success",
			})
			checkSpan(t, bs, "POST /uppercase", last.spanID(), statusOK, nil)
			if len(attempts) == 1 {
				continue
			}
			retries++
			if len(attempts) != 2 {
				t.Fatalf("%d attempts with -proxy.attempts 2:\n%s", len(attempts), spanList(spans))
			}
			checkSpan(t, attempts[0], "POST /uppercase", ps.spanID(), statusErr, map[string]string{
				"stringsvc.upstream": failingAddr, "stringsvc.attempt.number": "1", "stringsvc.attempt.retry": "false",
				"http.response.status_code": "500", "stringsvc.attempt.outcome": "error",
			})
			if got := last.attrs()["http.request.resend_count"]; got != "1" {
				t.Errorf("retry's http.request.resend_count = %q; want 1", got)
			}
		}
		if retries == 0 {
			t.Errorf("no request through [failing, backend] was retried; want one at least")
		}
	})

	t.Run("5xx is a span error", func(t *testing.T) {
		spans := waitSpans(t, rcv, failed.traceID, 2)
		ps, pc := oneSpan(t, spans, "broken", spanServer), oneSpan(t, spans, "broken", spanClient)
		checkSpan(t, ps, "POST /uppercase", failed.spanID, statusErr, map[string]string{
			"http.response.status_code": "502", "error.type": "502"})
		if len(ps.Events) == 0 || ps.Events[0].Name != "exception" {
			t.Errorf("502's server span events = %v; want the cause as an exception event", ps.Events)
		}
		checkSpan(t, pc, "POST /uppercase", ps.spanID(), statusErr, map[string]string{
			"server.port": strconv.Itoa(portOf(t, dead)), "stringsvc.attempt.outcome": "error"})
		if line := logLine(t, broken.stderr.String(), `msg="request failed"`); !strings.Contains(line, "trace_id="+failed.traceID) {
			t.Errorf("broken proxy's failure line %q; want trace_id=%s", line, failed.traceID)
		}
	})

	t.Run("caller's decision not to sample", func(t *testing.T) {
		if spans := rcv.trace(unsampled.traceID); len(spans) != 0 {
			t.Errorf("a request whose traceparent says unsampled was exported:\n%s", spanList(spans))
		}
		for _, r := range []*stringsvcRun{proxy, backend} {
			if line := logLine(t, r.stderr.String(), "input=unsampled "); strings.Contains(line, "trace_id") {
				t.Errorf("log line of an unsampled request %q; want no trace_id", line)
			}
		}
	})

	t.Run("new trace without traceparent", func(t *testing.T) {
		line := logLine(t, proxy.stderr.String(), "input=rootless ")
		m := regexp.MustCompile(`trace_id=(\w+) span_id=(\w+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("proxy's log line %q; want trace_id and span_id", line)
		}
		spans := waitSpans(t, rcv, m[1], 3)
		ps := oneSpan(t, spans, "proxy", spanServer)
		checkSpan(t, ps, "POST /uppercase", "", statusOK, nil)
		if ps.spanID() != m[2] {
			t.Errorf("proxy logged span_id=%s; want its server span's, %s", m[2], ps.spanID())
		}
		oneSpan(t, spans, "backend", spanServer)
	})
}

func TestTracingGRPCEndToEnd(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	backend := startStringsvcEnv(t, nil, "-otel.endpoint", rcv.URL, "-service.name", "backend", "-grpc.listen", "127.0.0.1:0")
	grpcAddr := backend.stderr.WaitMatch(t, traceGRPCListening, backend.exited, waitTimeout)[1]
	proxy := startStringsvcEnv(t, nil, "-otel.endpoint", rcv.URL, "-service.name", "proxy",
		"-proxy", "grpc://"+grpcAddr, "-proxy.attempt-timeout", "5s", "-proxy.timeout", "10s")

	ok, business, direct := clientTrace(7, true), clientTrace(8, true), clientTrace(9, true)
	if status, body := postTraced(t, "http://"+proxy.addr+"/uppercase", `{"s":"hello"}`, ok); status != http.StatusOK {
		t.Fatalf("POST /uppercase through a gRPC upstream = %d %q; want 200", status, body)
	}
	if status, body := postTraced(t, "http://"+proxy.addr+"/uppercase", `{"s":""}`, business); status != http.StatusBadRequest {
		t.Fatalf("POST /uppercase \"\" through a gRPC upstream = %d %q; want 400", status, body)
	}
	conn := dialTest(t, grpcAddr)
	ctx := metadata.AppendToOutgoingContext(testContext(t), "traceparent", direct.String())
	if _, err := pb.NewStringServiceClient(conn).Uppercase(ctx, &pb.UppercaseRequest{S: ""}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC Uppercase(\"\") = %v; want INVALID_ARGUMENT", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(testContext(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("gRPC health check: %v", err)
	}
	for _, r := range []*stringsvcRun{proxy, backend} {
		if err := r.stop(t); err != nil {
			t.Fatalf("run returned %v\n%s", err, r.stderr)
		}
	}

	const method = "stringsvc.v1.StringService/Uppercase"
	for _, tt := range []struct {
		name    string
		tp      traceparent
		code    string
		outcome string
	}{
		{"success", ok, "OK", "success"},
		{"business error", business, "INVALID_ARGUMENT", "business_error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spans := waitSpans(t, rcv, tt.tp.traceID, 3)
			ps, pc, bs := oneSpan(t, spans, "proxy", spanServer), oneSpan(t, spans, "proxy", spanClient),
				oneSpan(t, spans, "backend", spanServer)
			checkSpan(t, ps, "POST /uppercase", tt.tp.spanID, statusOK, nil)
			checkSpan(t, pc, method, ps.spanID(), statusOK, map[string]string{
				"rpc.system.name": "grpc", "rpc.method": method, "rpc.response.status_code": tt.code,
				"server.address": "127.0.0.1", "server.port": strconv.Itoa(portOf(t, grpcAddr)),
				"stringsvc.upstream": "grpc://" + grpcAddr, "stringsvc.attempt.outcome": tt.outcome,
			})
			checkSpan(t, bs, method, pc.spanID(), statusOK, map[string]string{
				"rpc.system.name": "grpc", "rpc.method": method, "rpc.response.status_code": tt.code,
			})
		})
	}
	t.Run("inbound traceparent", func(t *testing.T) {
		spans := waitSpans(t, rcv, direct.traceID, 1)
		checkSpan(t, oneSpan(t, spans, "backend", spanServer), method, direct.spanID, statusOK,
			map[string]string{"rpc.response.status_code": "INVALID_ARGUMENT"})
	})
	t.Run("health checks untraced", func(t *testing.T) {
		for _, s := range rcv.all() {
			if strings.HasPrefix(s.Name, "grpc.health") {
				t.Errorf("health check traced: %v", s)
			}
		}
	})
}

// TestTracingOTLPGRPC exports over OTLP/gRPC instead, set up from the
// environment alone.
func TestTracingOTLPGRPC(t *testing.T) {
	t.Parallel()
	rcv := newOTLPGRPCReceiver(t)
	backend := startStringsvcEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "backend"})
	tp := clientTrace(10, true)
	if status, body := postTraced(t, "http://"+backend.addr+"/uppercase", `{"s":"hello"}`, tp); status != http.StatusOK {
		t.Fatalf("POST /uppercase = %d %q; want 200", status, body)
	}
	if err := backend.stop(t); err != nil {
		t.Fatal(err)
	}
	spans := waitSpans(t, rcv, tp.traceID, 1)
	checkSpan(t, oneSpan(t, spans, "backend", spanServer), "POST /uppercase", tp.spanID, statusOK,
		map[string]string{"http.response.status_code": "200"})
}

// TestProxyWithoutTracingSendsNoTraceContext checks that with tracing off
// a proxy neither forwards a caller's traceparent nor writes one of its
// own, and logs no trace IDs.
func TestProxyWithoutTracingSendsNoTraceContext(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []http.Header
	h := newServiceHandler(func() bool { return true }, 1<<20)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(backend.Close)
	proxy := startStringsvcEnv(t, nil, "-proxy", strings.TrimPrefix(backend.URL, "http://"))
	tp := clientTrace(1, true)
	if status, body := postTraced(t, "http://"+proxy.addr+"/uppercase", `{"s":"hello"}`, tp); status != http.StatusOK {
		t.Fatalf("POST /uppercase = %d %q; want 200", status, body)
	}
	if err := proxy.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("backend got %d requests; want 1", len(got))
	}
	for _, name := range []string{"Traceparent", "Tracestate"} {
		if v := got[0].Values(name); len(v) > 0 {
			t.Errorf("backend got %s: %q from a proxy without tracing; want none", name, v)
		}
	}
	if line := logLine(t, proxy.stderr.String(), "input=hello "); strings.Contains(line, "trace_id") {
		t.Errorf("log line %q of a proxy without tracing; want no trace_id", line)
	}
}
