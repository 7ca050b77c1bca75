package zk

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"stringsvc/internal/sd/instance"
	"stringsvc/internal/testenv"
)

// sessionTimeout is short so that expiry tests are quick; the test server's
// tick allows down to 2 ticks.
const sessionTimeout = time.Second

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

func newClient(tb testing.TB, addr string, timeout time.Duration, logger log.Logger) *Client {
	tb.Helper()
	c, err := NewClient([]string{addr}, timeout, logger)
	if err != nil {
		tb.Fatalf("NewClient(%s) = %v", addr, err)
	}
	tb.Cleanup(c.Close)
	return c
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

// runRegistrar runs a registrar of addr until the test stops it with the
// returned function, which fails the test if Run did not return nil.
func runRegistrar(tb testing.TB, client *Client, addr string, metrics instance.RegistrarMetrics,
	logger log.Logger) (stop func()) {
	tb.Helper()
	r, err := NewRegistrar(client, Service{Name: "svc", Addr: addr}, time.Second, metrics, logger)
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
				tb.Errorf("Run(%s) = %v; want nil", addr, err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// cutProxy forwards TCP connections to a backend until it is cut: then it
// closes every connection and closes each new one at once, until restored.
// ZooKeeper sees the client gone and expires its session when the timeout
// passes, while the client cannot reach it: a real expiry, as after a
// network cut.
type cutProxy struct {
	Addr    string
	ln      net.Listener
	backend string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startCutProxy(tb testing.TB, backend string) *cutProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &cutProxy{Addr: ln.Addr().String(), ln: ln, backend: backend, conns: make(map[net.Conn]bool)}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Cut closes every connection and refuses new ones.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore forwards new connections again.
func (p *cutProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	b, err := net.DialTimeout("tcp", p.backend, time.Second)
	if err != nil {
		return
	}
	defer b.Close()
	if !p.track(c, b) {
		return
	}
	defer p.untrack(c, b)
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }()
	go func() { io.Copy(c, b); done <- struct{}{} }()
	<-done // one way ended: end both
	c.Close()
	b.Close()
	<-done
}

func (p *cutProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

func (p *cutProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

func TestNewRegistrarRefusesBadAddr(t *testing.T) {
	for _, addr := range []string{"", "host", "a/b:1"} {
		if _, err := NewRegistrar(nil, Service{Name: "svc", Addr: addr}, time.Second,
			instance.RegistrarMetrics{}, log.NewNopLogger()); err == nil {
			t.Errorf("NewRegistrar(Addr %q) = nil error; want an error", addr)
		}
	}
}
