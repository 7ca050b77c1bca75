package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stringsvc/internal/logfmt"
)

// benchHandler is the whole HTTP stack of a backend, with request logging
// to io.Discard through the same buffered writer run uses.
func benchHandler(b *testing.B, logger log.Logger) http.Handler {
	b.Helper()
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	var svc StringService = stringService{}
	svc = loggingMiddleware{logger: logger, next: svc}
	svc = newInstrumentingMiddleware(m)(svc)
	return newHTTPHandler(makeUppercaseEndpoint(svc), makeCountEndpoint(svc), func() bool { return true },
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), 1<<20, logger)
}

func benchLogger(b *testing.B) log.Logger {
	b.Helper()
	lw := logfmt.NewWriter(io.Discard, 100*time.Millisecond)
	b.Cleanup(func() { lw.Close() })
	logger, err := newLogger("logfmt", lw)
	if err != nil {
		b.Fatal(err)
	}
	return logger
}

func BenchmarkUppercase(b *testing.B) {
	b.ReportAllocs()
	ctx := context.Background()
	var svc stringService
	for b.Loop() {
		if _, err := svc.Uppercase(ctx, "hello, world"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHTTPUppercase(b *testing.B) {
	h := benchHandler(b, benchLogger(b))
	for _, bb := range []struct{ name, timeout string }{
		{"plain", ""},
		{"timeout-header", "100"}, // as a proxy's attempt sends it
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/uppercase", strings.NewReader(`{"s":"hello, world"}`))
				if bb.timeout != "" {
					req.Header[timeoutHeader] = []string{bb.timeout}
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

func BenchmarkLoggingMiddleware(b *testing.B) {
	benchUppercaseParallel(b, loggingMiddleware{logger: benchLogger(b), next: stringService{}})
}

func BenchmarkInstrumentingMiddleware(b *testing.B) {
	benchUppercaseParallel(b, newInstrumentingMiddleware(newMetrics(prometheus.NewRegistry()))(stringService{}))
}

// benchUppercaseParallel calls svc.Uppercase from every P at once, as a
// server's connections do.
func benchUppercaseParallel(b *testing.B, svc StringService) {
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.Uppercase(ctx, "hello, world"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkProxyUppercase measures the proxying middleware alone (balancer,
// retry, limiter, breaker, upstream client) against three backends over
// loopback, with each balancer, over HTTP and gRPC.
func BenchmarkProxyUppercase(b *testing.B) {
	var httpInstances, grpcInstances []string
	for range 3 {
		srv := httptest.NewServer(benchHandler(b, log.NewNopLogger()))
		b.Cleanup(srv.Close)
		httpInstances = append(httpInstances, strings.TrimPrefix(srv.URL, "http://"))
		ts := startGRPCServer(b, stringService{}, nil, grpcOptions{})
		grpcInstances = append(grpcInstances, "grpc://"+ts.addr)
	}
	for _, bb := range []struct {
		name      string
		instances []string
		balancer  string
		hedge     time.Duration
	}{
		{"roundrobin", httpInstances, "roundrobin", 0},
		{"p2c", httpInstances, "p2c", 0},
		{"hedge-armed", httpInstances, "roundrobin", time.Second}, // the timer never fires
		{"grpc", grpcInstances, "roundrobin", 0},
	} {
		b.Run(bb.name, func(b *testing.B) {
			cfg := proxyConfig{
				Balancer: bb.balancer, Attempts: 3, AttemptTimeout: time.Second, Timeout: 2 * time.Second,
				RetryBudget: 0.2, RetryBudgetMin: 10, RetryBackoff: 2 * time.Millisecond,
				HedgeAfter: bb.hedge, HedgeBudget: 0.05,
				BreakerFailures: 5, BreakerRatio: 0.5, BreakerMinRequests: 20, BreakerInterval: 10 * time.Second,
				BreakerCooldown: 5 * time.Second, MaxIdleConnsPerHost: 64,
			}
			m := newMetrics(prometheus.NewRegistry())
			ups := newUpstreams(cfg, m)
			for _, instance := range bb.instances {
				_, closer, err := ups.Factory(instance)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { closer.Close() })
			}
			svc := newProxyingMiddleware(ups, cfg, m)(stringService{})
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if v, err := svc.Uppercase(ctx, "hello, world"); err != nil || v != "HELLO, WORLD" {
						b.Errorf("Uppercase = %q, %v; want HELLO, WORLD, nil", v, err)
						return
					}
				}
			})
		})
	}
}
