package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"stringsvc/internal/lb"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"
)

// waitTimeout bounds every wait for something that should happen at once:
// generous, because the machine running the tests may be busy.
const waitTimeout = 10 * time.Second

// backend is one instance of our own stack on 127.0.0.1. It counts the
// /uppercase requests it gets and answers them with 500 while failing is set.
type backend struct {
	*httptest.Server
	instance string // "127.0.0.1:port", as -proxy takes it
	reg      *prometheus.Registry
	hits     atomic.Int64
	failing  atomic.Bool
}

func newBackend(tb testing.TB) *backend {
	tb.Helper()
	b := &backend{reg: prometheus.NewRegistry()}
	h := newHandler(stringService{}, log.NewNopLogger(), b.reg, newMetrics(b.reg), func() bool { return true }, 1<<20)
	b.Server = startServer(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/uppercase" {
			b.hits.Add(1)
			if b.failing.Load() {
				writeJSON(w, http.StatusInternalServerError, errorResponse{Err: "internal error"})
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	b.instance = strings.TrimPrefix(b.URL, "http://")
	return b
}

func newBackends(tb testing.TB, n int) ([]*backend, []string) {
	tb.Helper()
	var backends []*backend
	var instances []string
	for range n {
		b := newBackend(tb)
		backends = append(backends, b)
		instances = append(instances, b.instance)
	}
	return backends, instances
}

func totalHits(backends []*backend) int64 {
	var n int64
	for _, b := range backends {
		n += b.hits.Load()
	}
	return n
}

// hangingBackend takes requests and answers none: each handler reads the
// body, reports on received, then waits until its request's context is done
// (and reports on canceled) or the test ends.
type hangingBackend struct {
	instance string
	received chan struct{}
	canceled chan struct{}
}

func newHangingBackend(tb testing.TB) *hangingBackend {
	tb.Helper()
	hb := &hangingBackend{received: make(chan struct{}, 100), canceled: make(chan struct{}, 100)}
	testDone := make(chan struct{})
	ts := startServer(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http notices that the client went away only once the body is read.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			tb.Errorf("hanging backend: read body: %v", err)
			return
		}
		hb.received <- struct{}{}
		select {
		case <-r.Context().Done():
			hb.canceled <- struct{}{}
		case <-testDone:
		}
	}))
	tb.Cleanup(func() { close(testDone) }) // before ts.Close, which waits for the handlers
	hb.instance = strings.TrimPrefix(ts.URL, "http://")
	return hb
}

// testProxy is our stack in proxy mode, built as run and newFixedProxy
// build it, served on 127.0.0.1.
type testProxy struct {
	*httptest.Server
	svc StringService // the proxying middleware alone
	ups *upstreams
	reg *prometheus.Registry
}

func newTestProxy(tb testing.TB, cfg proxyConfig, instances ...string) *testProxy {
	tb.Helper()
	if err := validateProxy(cfg); err != nil {
		tb.Fatalf("validateProxy(%+v) = %v; want nil", cfg, err)
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	ups := newUpstreams(cfg, m)
	for _, instance := range instances {
		if _, _, err := ups.Factory(instance); err != nil {
			tb.Fatalf("Factory(%q) = %v; want nil", instance, err)
		}
	}
	svc := newProxyingMiddleware(ups, cfg, m)(stringService{})
	return &testProxy{
		Server: startServer(tb, newHandler(svc, log.NewNopLogger(), reg, m, ups.Ready, 1<<20)),
		svc:    svc,
		ups:    ups,
		reg:    reg,
	}
}

// testProxyConfig is a config under which nothing trips by accident: no
// rate limit, breakers that open only after 100 failures, timeouts of
// seconds. Tests change what they exercise.
func testProxyConfig() proxyConfig {
	return proxyConfig{
		Balancer:            "roundrobin",
		Attempts:            3,
		AttemptTimeout:      5 * time.Second,
		Timeout:             waitTimeout,
		RetryBudget:         1,
		RetryBudgetMin:      1000,
		HedgeBudget:         0.05,
		BreakerFailures:     100,
		BreakerRatio:        1,
		BreakerMinRequests:  1000,
		BreakerCooldown:     time.Minute,
		MaxIdleConnsPerHost: 4,
	}
}

// uppercase POSTs {"s":s} to the proxy and returns the answer, its body
// without the trailing newline.
func (p *testProxy) uppercase(tb testing.TB, s string) (*http.Response, string) {
	tb.Helper()
	body, err := json.Marshal(uppercaseRequest{S: s})
	if err != nil {
		tb.Fatalf("marshal %q: %v", s, err)
	}
	resp, answer := send(tb, p.Client(), http.MethodPost, p.URL+"/uppercase", string(body))
	return resp, strings.TrimSuffix(answer, "\n")
}

// mustUppercase checks that the proxy uppercases s.
func (p *testProxy) mustUppercase(tb testing.TB, s string) {
	tb.Helper()
	resp, body := p.uppercase(tb, s)
	want, err := json.Marshal(uppercaseResponse{V: strings.ToUpper(s)})
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	if resp.StatusCode != http.StatusOK || body != string(want) {
		tb.Fatalf("POST /uppercase %q via proxy = %d %s; want 200 %s", s, resp.StatusCode, body, want)
	}
}

func (p *testProxy) breakerState(tb testing.TB, instance string) float64 {
	tb.Helper()
	return metricValue(tb, p.reg, "stringsvc_upstream_breaker_state", "upstream", instance)
}

func (p *testProxy) outcomes(tb testing.TB, instance, outcome string) float64 {
	tb.Helper()
	return metricValue(tb, p.reg, "stringsvc_upstream_requests_total", "upstream", instance, "outcome", outcome)
}

// receive waits for a value on ch.
func receive(tb testing.TB, ch <-chan struct{}, what string) {
	tb.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		tb.Fatalf("no %s after %v", what, waitTimeout)
	}
}

// waitFor polls cond until it holds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			tb.Fatalf("%s: not after %v", what, waitTimeout)
		}
	}
}

func TestProxyRoundRobin(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 3)
	p := newTestProxy(t, testProxyConfig(), instances...)
	const perBackend = 10
	for range perBackend * len(backends) {
		p.mustUppercase(t, "hello")
	}
	for _, b := range backends {
		served := metricValue(t, b.reg, "stringsvc_requests_total", "method", "uppercase", "error", "false")
		if b.hits.Load() != perBackend || served != perBackend {
			t.Errorf("backend %s got %d requests, served %v; want %d, %d", b.instance, b.hits.Load(), served, perBackend, perBackend)
		}
		if got := p.outcomes(t, b.instance, "success"); got != perBackend {
			t.Errorf("proxy's upstream successes for %s = %v; want %d", b.instance, got, perBackend)
		}
	}
	// Count is served by the proxy itself.
	resp, body := send(t, p.Client(), http.MethodPost, p.URL+"/count", `{"s":"héllo"}`)
	if resp.StatusCode != http.StatusOK || body != "{\"v\":5}\n" || totalHits(backends) != perBackend*3 {
		t.Errorf("POST /count via proxy = %d %q, %d backend hits; want 200 {\"v\":5}, %d", resp.StatusCode, body, totalHits(backends), perBackend*3)
	}
}

func TestProxyRandomReachesEveryBackend(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 3)
	cfg := testProxyConfig()
	cfg.Balancer = "random"
	p := newTestProxy(t, cfg, instances...)
	for range 60 { // P(some backend gets none) = 3·(2/3)^60 ≈ 1e-10
		p.mustUppercase(t, "hello")
	}
	for _, b := range backends {
		if b.hits.Load() == 0 {
			t.Errorf("backend %s got no request of 60", b.instance)
		}
	}
}

func TestProxyRetriesPastClosedBackend(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 3)
	p := newTestProxy(t, testProxyConfig(), instances...)
	// Without retries, the closed instance's turn fails.
	cfg := testProxyConfig()
	cfg.Attempts = 1
	noRetry := newTestProxy(t, cfg, instances...)
	backends[1].Close()

	for range 12 {
		p.mustUppercase(t, "hello")
	}
	if got := p.outcomes(t, backends[1].instance, "error"); got < 1 {
		t.Errorf("proxy's upstream errors for the closed %s = %v; want at least 1", backends[1].instance, got)
	}
	if got := metricValue(t, p.reg, "stringsvc_upstream_retries_total"); got < 1 {
		t.Errorf("stringsvc_upstream_retries_total = %v; want at least 1", got)
	}

	var badGateway int
	for range 3 {
		resp, body := noRetry.uppercase(t, "hello")
		if resp.StatusCode == http.StatusBadGateway {
			badGateway++
			if want := `{"v":"","err":"upstream failed"}`; body != want {
				t.Errorf("POST /uppercase via proxy = 502 %s; want 502 %s", body, want)
			}
		}
	}
	if badGateway != 1 {
		t.Errorf("with -proxy.attempts 1, %d of 3 requests got 502; want 1 (the closed instance's turn)", badGateway)
	}
}

func TestProxyBreakerOpensAndCloses(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 3)
	cfg := testProxyConfig()
	cfg.BreakerFailures = 2
	// The phase "open, no traffic" below must fit in it.
	cfg.BreakerCooldown = 3 * time.Second
	p := newTestProxy(t, cfg, instances...)
	bad := backends[0]
	bad.failing.Store(true)

	for i := 0; p.breakerState(t, bad.instance) != 2; i++ {
		if i == 30 {
			t.Fatalf("breaker of %s (answering 500) not open after 30 requests: state %v, %d hits",
				bad.instance, p.breakerState(t, bad.instance), bad.hits.Load())
		}
		p.mustUppercase(t, "hello") // the 500s are retried on another instance
	}
	if got := bad.hits.Load(); got != int64(cfg.BreakerFailures) {
		t.Errorf("%s got %d requests before its breaker opened; want %d", bad.instance, got, cfg.BreakerFailures)
	}
	if !p.ups.Ready() {
		t.Errorf("Ready() = false with one breaker of three open; want true")
	}

	// Open: the instance gets nothing, the others take its turns.
	hitsWhenOpened := bad.hits.Load()
	for range 9 {
		p.mustUppercase(t, "hello")
	}
	if got := bad.hits.Load(); got != hitsWhenOpened {
		t.Errorf("%s got %d requests while its breaker was open; want 0", bad.instance, got-hitsWhenOpened)
	}
	if got := p.outcomes(t, bad.instance, "breaker_open"); got < 1 {
		t.Errorf("proxy's breaker_open outcomes for %s = %v; want at least 1", bad.instance, got)
	}

	// After the cooldown one probe goes through; a healthy answer closes it.
	bad.failing.Store(false)
	waitFor(t, "probe of "+bad.instance, func() bool {
		p.mustUppercase(t, "hello")
		return bad.hits.Load() > hitsWhenOpened
	})
	if got := p.breakerState(t, bad.instance); got != 0 {
		t.Errorf("breaker state of %s after a successful probe = %v; want 0 (closed)", bad.instance, got)
	}
	hitsAfterProbe := bad.hits.Load()
	for range 6 {
		p.mustUppercase(t, "hello")
	}
	if got := bad.hits.Load() - hitsAfterProbe; got != 2 {
		t.Errorf("%s got %d of 6 requests after its breaker closed; want 2, its round-robin share", bad.instance, got)
	}
}

func TestProxyReadiness(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 2)
	cfg := testProxyConfig()
	cfg.Attempts = 2
	cfg.BreakerFailures = 1
	p := newTestProxy(t, cfg, instances...)
	if !p.ups.Ready() {
		t.Fatalf("Ready() = false with every breaker closed; want true")
	}
	for _, b := range backends {
		b.failing.Store(true)
	}

	// Both attempts fail, and each failure opens a breaker.
	resp, body := p.uppercase(t, "hello")
	if want := `{"v":"","err":"upstream failed"}`; resp.StatusCode != http.StatusBadGateway || body != want {
		t.Errorf("POST /uppercase, every instance failing = %d %s; want 502 %s", resp.StatusCode, body, want)
	}
	if p.ups.Ready() {
		t.Errorf("Ready() = true with every breaker open; want false")
	}
	resp, body = send(t, p.Client(), http.MethodGet, p.URL+"/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET /readyz, every breaker open = %d %s (Retry-After %q); want 503 with Retry-After",
			resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}

	// No instance is tried: the client is told to come back later.
	hits := totalHits(backends)
	resp, body = p.uppercase(t, "hello")
	want := `{"v":"","err":"no upstream instance available, retry later"}`
	if resp.StatusCode != http.StatusServiceUnavailable || body != want || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /uppercase, every breaker open = %d %s (Retry-After %q); want 503 %s with Retry-After",
			resp.StatusCode, body, resp.Header.Get("Retry-After"), want)
	}
	if got := totalHits(backends); got != hits {
		t.Errorf("backends got %d requests with every breaker open; want 0", got-hits)
	}
}

func TestProxyLimiter(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 3)
	cfg := testProxyConfig()
	cfg.QPS = 0.001 // a new token every 1000s: only the burst counts
	cfg.Burst = 2
	p := newTestProxy(t, cfg, instances...)

	// Within the limit: everything passes, round robin as usual.
	for range cfg.Burst * len(backends) {
		p.mustUppercase(t, "hello")
	}
	for _, b := range backends {
		if got := b.hits.Load(); got != int64(cfg.Burst) {
			t.Errorf("backend %s got %d requests; want %d", b.instance, got, cfg.Burst)
		}
	}

	// Every limiter empty: 503 at once, no instance tried.
	resp, body := p.uppercase(t, "hello")
	want := `{"v":"","err":"no upstream instance available, retry later"}`
	if resp.StatusCode != http.StatusServiceUnavailable || body != want || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("POST /uppercase, every limiter empty = %d %s (Retry-After %q); want 503 %s with Retry-After 1",
			resp.StatusCode, body, resp.Header.Get("Retry-After"), want)
	}
	if got := totalHits(backends); got != int64(cfg.Burst*len(backends)) {
		t.Errorf("backends got %d requests; want %d", got, cfg.Burst*len(backends))
	}
	_, err := p.svc.Uppercase(context.Background(), "hello")
	if got := errorStatus(err); got != http.StatusServiceUnavailable {
		t.Errorf("proxying Uppercase, every limiter empty: error %v has status %d; want %d", err, got, http.StatusServiceUnavailable)
	}
	for _, b := range backends {
		if got := metricValue(t, p.reg, "stringsvc_upstream_limited_total", "upstream", b.instance); got < 1 {
			t.Errorf("stringsvc_upstream_limited_total{upstream=%q} = %v; want at least 1", b.instance, got)
		}
		if got := p.breakerState(t, b.instance); got != 0 {
			t.Errorf("breaker state of %s = %v; want 0: a refusal for rate is no failure", b.instance, got)
		}
	}
}

func TestProxyLimitedInstanceIsSkipped(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 3)
	cfg := testProxyConfig()
	cfg.QPS = 0.001
	cfg.Burst = 2
	p := newTestProxy(t, cfg, instances...)

	// Spend the first instance's burst, through its own endpoint.
	for range cfg.Burst {
		if _, err := p.ups.Instances()[0].Endpoint(context.Background(), uppercaseRequest{S: "hello"}); err != nil {
			t.Fatalf("endpoint of %s = %v; want nil", instances[0], err)
		}
	}
	// Its turns go to the next instance; every request still succeeds.
	for range cfg.Burst * 2 {
		p.mustUppercase(t, "hello")
	}
	if got := backends[0].hits.Load(); got != int64(cfg.Burst) {
		t.Errorf("limited %s got %d requests; want %d (the direct ones)", backends[0].instance, got, cfg.Burst)
	}
	for _, b := range backends[1:] {
		if got := b.hits.Load(); got != int64(cfg.Burst) {
			t.Errorf("backend %s got %d requests; want %d", b.instance, got, cfg.Burst)
		}
	}
	if got := metricValue(t, p.reg, "stringsvc_upstream_retries_total"); got != 0 {
		t.Errorf("stringsvc_upstream_retries_total = %v; want 0: skipping a limited instance is no retry", got)
	}
	resp, body := p.uppercase(t, "hello")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /uppercase, every limiter empty = %d %s; want 503", resp.StatusCode, body)
	}
}

func TestProxyBusinessErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 3)
	cfg := testProxyConfig()
	cfg.BreakerFailures = 1 // one counted failure would open a breaker
	p := newTestProxy(t, cfg, instances...)

	const n = 9
	for i := range n {
		hits := totalHits(backends)
		resp, body := p.uppercase(t, "")
		if want := `{"v":"","err":"empty string"}`; resp.StatusCode != http.StatusBadRequest || body != want {
			t.Errorf("POST /uppercase \"\" via proxy = %d %s; want 400 %s", resp.StatusCode, body, want)
		}
		if got := totalHits(backends) - hits; got != 1 {
			t.Errorf("request %d: backends got %d requests; want 1", i, got)
		}
	}
	v, err := p.svc.Uppercase(context.Background(), "")
	if !errors.Is(err, ErrEmpty) || errorStatus(err) != http.StatusBadRequest {
		t.Errorf("proxying Uppercase(\"\") = %q, %v (status %d); want ErrEmpty (400)", v, err, errorStatus(err))
	}

	var business float64
	for _, b := range backends {
		if got := p.breakerState(t, b.instance); got != 0 {
			t.Errorf("breaker state of %s after business errors = %v; want 0 (closed)", b.instance, got)
		}
		business += p.outcomes(t, b.instance, "business_error")
	}
	if business != n+1 {
		t.Errorf("business_error outcomes = %v; want %d", business, n+1)
	}
	if got := metricValue(t, p.reg, "stringsvc_upstream_retries_total"); got != 0 {
		t.Errorf("stringsvc_upstream_retries_total = %v; want 0", got)
	}
	if !p.ups.Ready() {
		t.Errorf("Ready() = false after business errors only; want true")
	}
	p.mustUppercase(t, "hello")
}

func TestProxyAttemptTimeout(t *testing.T) {
	t.Parallel()
	hanging := newHangingBackend(t)
	_, instances := newBackends(t, 2)
	cfg := testProxyConfig()
	cfg.AttemptTimeout = time.Second
	p := newTestProxy(t, cfg, append([]string{hanging.instance}, instances...)...)

	for range 3 { // one of them, at least, starts on the hanging instance
		p.mustUppercase(t, "hello")
	}
	tried := len(hanging.received)
	if tried == 0 {
		t.Fatalf("hanging instance got no request of 3; want at least 1")
	}
	for range tried {
		receive(t, hanging.canceled, "cancellation of the timed-out attempt")
	}
	if got := p.outcomes(t, hanging.instance, "timeout"); got != float64(tried) {
		t.Errorf("timeout outcomes for the hanging instance = %v; want %d", got, tried)
	}
}

func TestProxyClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	hanging := newHangingBackend(t)
	cfg := testProxyConfig()
	cfg.AttemptTimeout = time.Minute
	cfg.Timeout = time.Minute
	p := newTestProxy(t, cfg, hanging.instance)

	t.Run("http", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/uppercase", strings.NewReader(`{"s":"hello"}`))
		if err != nil {
			t.Fatalf("new request: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			resp, err := p.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		receive(t, hanging.received, "proxied request")
		cancel()
		receive(t, hanging.canceled, "cancellation of the upstream request")
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("client request after cancel = %v; want context.Canceled", err)
		}
		waitFor(t, "canceled outcome", func() bool { return p.outcomes(t, hanging.instance, "canceled") == 1 })
	})

	t.Run("direct", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := p.svc.Uppercase(ctx, "hello")
			done <- err
		}()
		receive(t, hanging.received, "proxied request")
		cancel()
		receive(t, hanging.canceled, "cancellation of the upstream request")
		err := <-done
		if !errors.Is(err, context.Canceled) || errorStatus(err) != statusClientClosedRequest {
			t.Errorf("proxying Uppercase after cancel = %v (status %d); want context.Canceled (%d)",
				err, errorStatus(err), statusClientClosedRequest)
		}
	})

	// A client that goes away says nothing about the instance.
	if got := p.breakerState(t, hanging.instance); got != 0 {
		t.Errorf("breaker state after cancellations = %v; want 0 (closed)", got)
	}
}

// TestProxySendsRemainingTime: each attempt carries its remaining time to
// the instance in Request-Timeout-Ms (TestTimeoutHeaderBoundsTheRequest
// shows the instance's service is bounded by it).
func TestProxySendsRemainingTime(t *testing.T) {
	t.Parallel()
	sent := make(chan string, 1)
	b := newBackend(t)
	spy := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent <- r.Header.Get(timeoutHeader)
		b.Config.Handler.ServeHTTP(w, r)
	}))
	cfg := testProxyConfig()
	cfg.AttemptTimeout = 200 * time.Millisecond
	p := newTestProxy(t, cfg, strings.TrimPrefix(spy.URL, "http://"))
	p.mustUppercase(t, "hello")
	got := <-sent
	ms, err := strconv.Atoi(got)
	if err != nil || ms <= 0 || ms > 200 {
		t.Errorf("%s sent with an attempt of 200ms = %q; want 1 to 200", timeoutHeader, got)
	}
}

// TestProxyHedgesToAnotherInstance: an attempt unanswered after
// -proxy.hedge-after is hedged to the other instance, whose answer wins; the
// hung attempt is cancelled.
func TestProxyHedgesToAnotherInstance(t *testing.T) {
	t.Parallel()
	hanging := newHangingBackend(t)
	good := newBackend(t)
	cfg := testProxyConfig()
	cfg.HedgeAfter = 20 * time.Millisecond
	cfg.HedgeBudget = 1
	p := newTestProxy(t, cfg, hanging.instance, good.instance)
	for range 4 { // round-robin: every other request tries the hanging instance first
		p.mustUppercase(t, "hello")
	}
	hung := len(hanging.received)
	if hung == 0 {
		t.Fatalf("the hanging instance got no request of 4; want every other one")
	}
	for range hung {
		receive(t, hanging.canceled, "the hedged-over attempt cancelled")
	}
	if got := metricValue(t, p.reg, "stringsvc_upstream_hedges_total"); got != float64(hung) {
		t.Errorf("hedges sent = %v; want %d, one per request the hanging instance took", got, hung)
	}
	if got := metricValue(t, p.reg, "stringsvc_upstream_hedges_won_total"); got != float64(hung) {
		t.Errorf("hedges won = %v; want %d", got, hung)
	}
}

// TestProxyOpenBreakerSpendsNoTokens: a call refused because the breaker is
// open does not take a token from the instance's limiter, so the limiter
// still has its tokens when the breaker lets calls through again.
func TestProxyOpenBreakerSpendsNoTokens(t *testing.T) {
	t.Parallel()
	backends, instances := newBackends(t, 2)
	cfg := testProxyConfig()
	cfg.QPS = 0.001 // no refill during the test
	cfg.Burst = 2
	cfg.BreakerFailures = 1
	cfg.BreakerCooldown = time.Hour
	p := newTestProxy(t, cfg, instances...)
	bad := backends[0]
	bad.failing.Store(true)
	for p.breakerState(t, bad.instance) != 2 { // one failure opens it; the retry answers
		p.mustUppercase(t, "hello")
	}
	var open *lb.Instance
	for _, in := range p.ups.Instances() {
		if in.Name == bad.instance {
			open = in
		}
	}
	for range 5 { // more calls than the burst: each is refused, none may spend a token
		if _, err := open.Endpoint(context.Background(), uppercaseRequest{S: "hello"}); !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("call of %s with its breaker open = %v; want %v", bad.instance, err, gobreaker.ErrOpenState)
		}
	}
	if got := metricValue(t, p.reg, "stringsvc_upstream_limited_total", "upstream", bad.instance); got != 0 {
		t.Errorf("limited calls of %s while its breaker was open = %v; want 0: its tokens were spent on refusals", bad.instance, got)
	}
}
