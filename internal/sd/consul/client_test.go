package consul

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"stringsvc/internal/sd/instance"
	"stringsvc/internal/testenv"
)

// checkInterval is the agent's floor: it raises anything shorter to 1s.
const checkInterval = time.Second

// newLogger returns a logger whose lines the test prints if it fails.
func newLogger(tb testing.TB) log.Logger {
	tb.Helper()
	var buf testenv.Buffer
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("log:\n%s", buf.String())
		}
	})
	return log.NewLogfmtLogger(&buf)
}

func newClient(tb testing.TB, addr string) *Client {
	tb.Helper()
	c, err := NewClient(addr, "")
	if err != nil {
		tb.Fatalf("NewClient(%q) = %v", addr, err)
	}
	return c
}

// backend is an instance's /readyz, answering 200 or 503 as the test says.
type backend struct {
	Addr string // host:port
	down atomic.Bool
}

func startBackend(tb testing.TB) *backend {
	tb.Helper()
	b := &backend{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if b.down.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	tb.Cleanup(srv.Close)
	b.Addr = strings.TrimPrefix(srv.URL, "http://")
	return b
}

// registrarMetrics returns metrics the test can read.
func registrarMetrics() instance.RegistrarMetrics {
	return instance.RegistrarMetrics{
		Registrations: prometheus.NewCounter(prometheus.CounterOpts{Name: "registrations"}),
		Registered:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "registered"}),
		Errors:        prometheus.NewCounter(prometheus.CounterOpts{Name: "errors"}),
	}
}

func value(tb testing.TB, m prometheus.Metric) float64 {
	tb.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		tb.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

// runRegistrar runs a registrar of svc until the test stops it with the
// returned function, which fails the test if Run did not return nil.
func runRegistrar(tb testing.TB, client *Client, svc Service, metrics instance.RegistrarMetrics,
	logger log.Logger) (stop func()) {
	tb.Helper()
	if svc.Check.Interval == 0 {
		svc.Check.Interval = checkInterval
	}
	r, err := NewRegistrar(client, svc, metrics, logger)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, 10*time.Second) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Run(%s) = %v; want nil", svc.Addr, err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}
func TestNewClient(t *testing.T) {
	tests := []struct {
		give, want string
		wantErr    bool
	}{
		{give: "127.0.0.1:8500", want: "http://127.0.0.1:8500"},
		{give: "http://consul:8500/", want: "http://consul:8500"},
		{give: "https://consul:8501", want: "https://consul:8501"},
		{give: "ftp://consul:21", wantErr: true},
		{give: "http://", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			c, err := NewClient(tt.give, "")
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewClient(%q) = %q, nil; want an error", tt.give, c.base)
				}
				return
			}
			if err != nil || c.base != tt.want {
				t.Fatalf("NewClient(%q) = %v; want base %q, nil", tt.give, err, tt.want)
			}
		})
	}
}

// TestClientToken runs the agent with ACLs on, default deny: only a
// client with the token may register.
func TestClientToken(t *testing.T) {
	t.Parallel()
	const token = "00000000-0000-4000-8000-000000000001"
	agent := testenv.StartConsul(t, "-hcl", `acl { enabled = true, default_policy = "deny",
		tokens { initial_management = "`+token+`" } }`)
	reg := registration{ID: "svc-1", Name: "svc", Address: "127.0.0.1", Port: 1}
	ctx := context.Background()
	if err := newClient(t, agent.Addr).register(ctx, reg); err == nil {
		t.Errorf("register without a token = nil; want an error")
	}
	withToken, err := NewClient(agent.Addr, token)
	if err != nil {
		t.Fatal(err)
	}
	if err := withToken.register(ctx, reg); err != nil {
		t.Errorf("register with the token = %v; want nil", err)
	}
}
