package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newTestService serves newServiceHandler on 127.0.0.1 until the test ends.
func newTestService(tb testing.TB, ready func() bool, maxBodyBytes int64) *httptest.Server {
	tb.Helper()
	return startServer(tb, newServiceHandler(ready, maxBodyBytes))
}

// newServiceHandler is our handler stack as run builds it without -proxy:
// stringService through logging, instrumenting and the HTTP transport,
// with its own metrics registry.
func newServiceHandler(ready func() bool, maxBodyBytes int64) http.Handler {
	reg := prometheus.NewRegistry()
	return newHandler(stringService{}, log.NewNopLogger(), reg, newMetrics(reg), ready, maxBodyBytes)
}

// newHandler wraps svc as run does: logging → instrumenting → endpoints →
// routes, with /metrics serving reg.
func newHandler(svc StringService, logger log.Logger, reg *prometheus.Registry, m *metrics,
	ready func() bool, maxBodyBytes int64) http.Handler {
	svc = loggingMiddleware{logger: logger, next: svc}
	svc = newInstrumentingMiddleware(m)(svc)
	return newHTTPHandler(makeUppercaseEndpoint(svc), makeCountEndpoint(svc), ready,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), maxBodyBytes, logger)
}

// startServer serves h on 127.0.0.1 until the test ends.
func startServer(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	ts := httptest.NewServer(h)
	tb.Cleanup(ts.Close)
	return ts
}

// send makes a request and returns the response with its body read.
func send(tb testing.TB, client *http.Client, method, url, body string) (*http.Response, string) {
	tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		tb.Fatalf("new request %s %s: %v", method, url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

// isJSON reports whether h declares a JSON body.
func isJSON(h http.Header) bool {
	mediaType, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mediaType == "application/json"
}

func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	const maxBodyBytes = 64
	ts := newTestService(t, func() bool { return true }, maxBodyBytes)
	tooLarge := `{"s":"` + strings.Repeat("a", maxBodyBytes) + `"}`
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantBody                 string // exact, when set
		wantErrPrefix            string // prefix of the "err" field, when set
		wantV                    bool   // the body has "v":"" next to "err" (stringsvc3's /uppercase errors)
		wantAllow                string
	}{
		{name: "uppercase", method: "POST", path: "/uppercase", body: `{"s":"hello"}`,
			wantStatus: 200, wantBody: `{"v":"HELLO"}`},
		{name: "uppercase unicode", method: "POST", path: "/uppercase", body: `{"s":"héllo"}`,
			wantStatus: 200, wantBody: `{"v":"HÉLLO"}`},
		{name: "uppercase GET with body", method: "GET", path: "/uppercase", body: `{"s":"hello"}`,
			wantStatus: 200, wantBody: `{"v":"HELLO"}`},
		{name: "count", method: "POST", path: "/count", body: `{"s":"abc"}`,
			wantStatus: 200, wantBody: `{"v":3}`},
		{name: "count code points", method: "POST", path: "/count", body: `{"s":"héllo"}`,
			wantStatus: 200, wantBody: `{"v":5}`},
		{name: "count GET with body", method: "GET", path: "/count", body: `{"s":"abcd"}`,
			wantStatus: 200, wantBody: `{"v":4}`},
		{name: "count empty string", method: "POST", path: "/count", body: `{"s":""}`,
			wantStatus: 200, wantBody: `{"v":0}`},
		{name: "uppercase empty string", method: "POST", path: "/uppercase", body: `{"s":""}`,
			wantStatus: 400, wantBody: `{"v":"","err":"empty string"}`},
		{name: "uppercase malformed JSON", method: "POST", path: "/uppercase", body: `{"s":`,
			wantStatus: 400, wantErrPrefix: "malformed request: ", wantV: true},
		{name: "uppercase not an object", method: "POST", path: "/uppercase", body: `hello`,
			wantStatus: 400, wantErrPrefix: "malformed request: ", wantV: true},
		{name: "uppercase wrong type", method: "POST", path: "/uppercase", body: `{"s":1}`,
			wantStatus: 400, wantBody: `{"v":"","err":"malformed request: field \"s\" must be a string, not number"}`},
		{name: "uppercase trailing data", method: "POST", path: "/uppercase", body: `{"s":"a"} x`,
			wantStatus: 400, wantErrPrefix: "malformed request: ", wantV: true},
		{name: "uppercase two objects", method: "POST", path: "/uppercase", body: `{"s":"a"}{"s":"b"}`,
			wantStatus: 400, wantErrPrefix: "malformed request: ", wantV: true},
		{name: "uppercase empty body", method: "POST", path: "/uppercase",
			wantStatus: 400, wantBody: `{"v":"","err":"malformed request: empty body, want a JSON object"}`},
		{name: "count malformed JSON", method: "POST", path: "/count", body: `{"s"`,
			wantStatus: 400, wantErrPrefix: "malformed request: "},
		{name: "count wrong type", method: "POST", path: "/count", body: `{"s":[]}`,
			wantStatus: 400, wantBody: `{"err":"malformed request: field \"s\" must be a string, not array"}`},
		{name: "count empty body", method: "POST", path: "/count",
			wantStatus: 400, wantBody: `{"err":"malformed request: empty body, want a JSON object"}`},
		{name: "uppercase too large", method: "POST", path: "/uppercase", body: tooLarge,
			wantStatus: 413, wantBody: `{"v":"","err":"http: request body too large"}`},
		{name: "count too large", method: "POST", path: "/count", body: tooLarge,
			wantStatus: 413, wantBody: `{"err":"http: request body too large"}`},
		{name: "uppercase PUT", method: "PUT", path: "/uppercase", body: `{"s":"a"}`,
			wantStatus: 405, wantBody: `{"err":"method not allowed"}`, wantAllow: "POST, GET"},
		{name: "uppercase DELETE", method: "DELETE", path: "/uppercase",
			wantStatus: 405, wantBody: `{"err":"method not allowed"}`, wantAllow: "POST, GET"},
		{name: "count PUT", method: "PUT", path: "/count", body: `{"s":"a"}`,
			wantStatus: 405, wantBody: `{"err":"method not allowed"}`, wantAllow: "POST, GET"},
		{name: "count DELETE", method: "DELETE", path: "/count",
			wantStatus: 405, wantBody: `{"err":"method not allowed"}`, wantAllow: "POST, GET"},
		{name: "healthz POST", method: "POST", path: "/healthz",
			wantStatus: 405, wantBody: `{"err":"method not allowed"}`, wantAllow: "GET"},
		{name: "unknown path", method: "GET", path: "/nope",
			wantStatus: 404, wantBody: `{"err":"not found"}`},
		{name: "path below a route", method: "POST", path: "/uppercase/x", body: `{"s":"a"}`,
			wantStatus: 404, wantBody: `{"err":"not found"}`},
		{name: "healthz", method: "GET", path: "/healthz",
			wantStatus: 200, wantBody: `{"status":"ok"}`},
		{name: "readyz", method: "GET", path: "/readyz",
			wantStatus: 200, wantBody: `{"status":"ready"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, ts.Client(), tt.method, ts.URL+tt.path, tt.body)
			body = strings.TrimSuffix(body, "\n")
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("%s %s %s: status = %d; want %d", tt.method, tt.path, tt.body, resp.StatusCode, tt.wantStatus)
			}
			if !isJSON(resp.Header) {
				t.Errorf("%s %s: Content-Type = %q; want application/json", tt.method, tt.path, resp.Header.Get("Content-Type"))
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("%s %s %s: body = %s; want %s", tt.method, tt.path, tt.body, body, tt.wantBody)
			}
			if tt.wantErrPrefix != "" {
				var got map[string]string
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("%s %s: decode body %s: %v", tt.method, tt.path, body, err)
				}
				if !strings.HasPrefix(got["err"], tt.wantErrPrefix) {
					t.Errorf("%s %s %s: err = %q; want prefix %q", tt.method, tt.path, tt.body, got["err"], tt.wantErrPrefix)
				}
				if v, ok := got["v"]; ok != tt.wantV || v != "" {
					t.Errorf("%s %s %s: body = %s; want \"v\":\"\" %v", tt.method, tt.path, tt.body, body, tt.wantV)
				}
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("%s %s: Allow = %q; want %q", tt.method, tt.path, got, tt.wantAllow)
			}
		})
	}
}

func TestReadyzNotReady(t *testing.T) {
	t.Parallel()
	ts := newTestService(t, func() bool { return false }, 1<<20)
	resp, body := send(t, ts.Client(), "GET", ts.URL+"/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz: status = %d; want %d", resp.StatusCode, http.StatusServiceUnavailable)
	}
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("GET /readyz: Retry-After = %q; want %q", got, "1")
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET /readyz: decode body %s: %v", body, err)
	}
	if got["status"] != "not ready" || got["err"] == "" || !isJSON(resp.Header) {
		t.Errorf("GET /readyz: body = %s (%s); want a JSON status \"not ready\" and an err", body, resp.Header.Get("Content-Type"))
	}
	// Liveness does not depend on readiness.
	if resp, body := send(t, ts.Client(), "GET", ts.URL+"/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %d %s; want 200", resp.StatusCode, body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	ts := newTestService(t, func() bool { return true }, 1<<20)
	for _, body := range []string{`{"s":"a"}`, `{"s":"b"}`, `{"s":""}`} {
		send(t, ts.Client(), "POST", ts.URL+"/uppercase", body)
	}
	send(t, ts.Client(), "POST", ts.URL+"/count", `{"s":"abc"}`)

	resp, body := send(t, ts.Client(), "GET", ts.URL+"/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status = %d; want 200", resp.StatusCode)
	}
	for _, want := range []string{
		`stringsvc_requests_total{error="false",method="uppercase"} 2`,
		`stringsvc_requests_total{error="true",method="uppercase"} 1`,
		`stringsvc_requests_total{error="false",method="count"} 1`,
		`stringsvc_request_duration_seconds_count{error="false",method="uppercase"} 2`,
		`stringsvc_request_duration_seconds_count{error="true",method="uppercase"} 1`,
		`stringsvc_request_duration_seconds_bucket{error="false",method="count",le="+Inf"} 1`,
		`stringsvc_count_result_sum 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics: no line %q in\n%s", want, body)
		}
	}
}

// FuzzDecodeUppercaseRequest checks that any body either decodes to a request
// that survives a round trip through JSON, or fails as the client's mistake.
func FuzzDecodeUppercaseRequest(f *testing.F) {
	for _, seed := range []string{
		`{"s":"hello"}`, `{"s":""}`, `{"s":"héllo \u00e9 \ud83d\ude00"}`, `{"S":"x","t":1}`,
		`{"s":1}`, `{"s":null}`, `null`, `[]`, `"s"`, `{`, ``, ` `, `{"s":"a"} x`, `{"s":"a"}{"s":"b"}`,
		`{"s":"a"}` + "\n\t ", "{\"s\":\"\xff\"}", `{"s":"` + strings.Repeat("a", 200) + `"}`,
	} {
		f.Add([]byte(seed))
	}
	const maxBodyBytes = 128
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/uppercase", bytes.NewReader(body))
		r.Body = http.MaxBytesReader(nil, r.Body, maxBodyBytes)
		req, err := decodeUppercaseRequest(context.Background(), r)
		if err != nil {
			if status := errorStatus(err); status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
				t.Fatalf("decode %q: errorStatus(%v) = %d; want 400 or 413", body, err, status)
			}
			if req != nil {
				t.Fatalf("decode %q = %#v, %v; want nil with the error", body, req, err)
			}
			return
		}
		if len(body) > maxBodyBytes {
			t.Fatalf("decode %q (%d bytes) succeeded; want an error past %d bytes", body, len(body), maxBodyBytes)
		}
		encoded, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("marshal %#v: %v", req, err)
		}
		again, err := decodeUppercaseRequest(context.Background(),
			httptest.NewRequest(http.MethodPost, "/uppercase", bytes.NewReader(encoded)))
		if err != nil || again != req {
			t.Fatalf("decode(marshal(%#v)) = %#v, %v; want %#v, nil", req, again, err, req)
		}
	})
}

// TestTimeoutHeaderBoundsTheRequest: Request-Timeout-Ms bounds the service's
// context; 0 is 504 without running the service; a malformed one is 400.
func TestTimeoutHeaderBoundsTheRequest(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	remaining := make(chan time.Duration, 10)
	svc := fakeService{uppercase: func(ctx context.Context, s string) (string, error) {
		calls.Add(1)
		deadline, ok := ctx.Deadline()
		if !ok {
			remaining <- -1
		} else {
			remaining <- time.Until(deadline)
		}
		return strings.ToUpper(s), nil
	}}
	reg := prometheus.NewRegistry()
	ts := startServer(t, newHandler(svc, log.NewNopLogger(), reg, newMetrics(reg), func() bool { return true }, 1<<20))
	client := &http.Client{Timeout: waitTimeout}
	post := func(header string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/uppercase", strings.NewReader(`{"s":"hi"}`))
		if err != nil {
			t.Fatal(err)
		}
		if header != "" {
			req.Header.Set(timeoutHeader, header)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST /uppercase with %s %q: %v", timeoutHeader, header, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}

	if status, _ := post("50"); status != http.StatusOK {
		t.Fatalf("with %s 50: status %d; want 200", timeoutHeader, status)
	}
	if got := <-remaining; got <= 0 || got > 50*time.Millisecond {
		t.Errorf("with %s 50, the service's context had %v left; want a deadline within 50ms", timeoutHeader, got)
	}
	if status, _ := post(""); status != http.StatusOK {
		t.Fatalf("without %s: status %d; want 200", timeoutHeader, status)
	}
	if got := <-remaining; got != -1 {
		t.Errorf("without %s, the service's context has a deadline %v away; want none", timeoutHeader, got)
	}

	before := calls.Load()
	for _, tt := range []struct {
		header     string
		wantStatus int
	}{
		{"0", http.StatusGatewayTimeout},
		{"-5", http.StatusBadRequest},
		{"soon", http.StatusBadRequest},
	} {
		status, body := post(tt.header)
		if status != tt.wantStatus || !strings.Contains(body, `"err"`) {
			t.Errorf("with %s %q: %d %q; want %d with an err body", timeoutHeader, tt.header, status, body, tt.wantStatus)
		}
	}
	if got := calls.Load() - before; got != 0 {
		t.Errorf("the service ran %d times for requests out of time or malformed; want 0", got)
	}
}
