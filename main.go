// Command stringsvc serves /uppercase and /count over HTTP and, with -proxy,
// forwards /uppercase to other instances through a per-instance circuit
// breaker and rate limiter, a load balancer and retries. It is go-kit's
// stringsvc3, built to survive real traffic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	stdlog "log"

	"github.com/go-kit/log"
	group "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"stringsvc/internal/grpchealth"
	"stringsvc/internal/h1"
	"stringsvc/internal/logfmt"
	"stringsvc/internal/tracing"
)

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// The service's live heap is a few MB and each request allocates a little,
// so at Go's default of 100 it collects many times a second under load. In
// paired runs of two proxies 400 cut the CPU per proxied request by about
// 4% and raised throughput by about 3%, for a few MB more memory. GOGC in
// the environment still decides.
const defaultGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "stringsvc:", err)
	if errors.As(err, &usageError{}) {
		os.Exit(2)
	}
	os.Exit(1)
}

// run is the whole program: it parses flags, builds the service, serves
// until ctx is done or SIGINT/SIGTERM arrives, then drains and returns.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, "stringsvc", buildVersion())
		return nil
	}

	logs := logfmt.NewWriter(stderr, cfg.logFlushInterval)
	defer logs.Close()
	logger, err := newLogger(cfg.logFormat, logs)
	if err != nil {
		return usageError{err}
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	dm := newDiscoveryMetrics(reg)
	tp, err := tracing.NewTracerProvider(cfg.otel, buildVersion(), logger)
	if err != nil {
		return err
	}
	defer tracing.Shutdown(tp, logger) // for an early return; after g.Run it is done already
	cfg.useTracing(tp)

	svc, serviceReady, stopProxy, err := newService(cfg, m, dm, logger)
	if err != nil {
		return err
	}
	defer stopProxy()
	var draining atomic.Bool // set once SIGTERM's -shutdown.delay begins
	ready := func() bool { return !draining.Load() && serviceReady() }
	uppercase, count := makeUppercaseEndpoint(svc), makeCountEndpoint(svc) // HTTP and gRPC alike
	handler := newHTTPHandler(uppercase, count, ready,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), cfg.maxBodyBytes,
		log.With(logger, "component", "http"))
	if cfg.Tracer != nil {
		// The service's routes; scrapes and probes would drown them.
		handler = tracing.Requests(cfg.Tracer, []string{"/uppercase", "/count"}, handler)
	}

	ln, grpcLn, err := listen(cfg, logger)
	if err != nil {
		return err
	}
	// For a return before Serve; once serving, the servers close them.
	defer ln.Close()
	if grpcLn != nil {
		defer grpcLn.Close()
	}
	srv := newHTTPServer(cfg, handler, logger)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var g group.Group
	g.Add(func() error {
		<-ctx.Done()
		logger.Log("msg", "shutting down", "timeout", cfg.shutdownTimeout)
		return nil
	}, func(error) { stop() })
	if cfg.Registry.kind != "" {
		// Before the servers: interrupts run in order, so the instance is
		// deregistered before the servers stop accepting.
		advertise, scheme := advertised(cfg, ln.Addr(), grpcLn)
		if err := addRegistrar(&g, cfg.discoveryConfig, advertise, scheme, dm, logger); err != nil {
			return err
		}
	}
	var hs *grpchealth.Server // set below when serving gRPC, before g runs
	if cfg.shutdownDelay > 0 {
		addDrainDelay(&g, cfg.shutdownDelay, &draining, &hs, logger)
	}
	if cfg.grpcListen != "" {
		// Its interrupt only starts the drain, which then runs beside the
		// HTTP server's.
		hs = addGRPC(&g, cfg, grpcLn, uppercase, count, ready, reg, logger)
	}
	addHTTPServer(&g, srv, ln, cfg.shutdownTimeout, logger)
	if cfg.debugListen != "" {
		if err := addDebugServer(&g, cfg.debugListen, logger); err != nil {
			return err
		}
	}
	err = g.Run()
	tracing.Shutdown(tp, logger) // the servers have drained: every span has ended
	logger.Log("msg", "stopped", "err", err)
	return err
}

// tracerName is the instrumentation scope of the program's own spans.
const tracerName = "stringsvc"

// useTracing gives the layers that trace the provider's tracer, through
// cfg; a nil tp leaves tracing out.
func (cfg *config) useTracing(tp *sdktrace.TracerProvider) {
	if tp != nil {
		cfg.Tracer, cfg.grpc.TracerProvider = tp.Tracer(tracerName), tp
	}
}

// newService builds the onion, inside out: service → proxying (with
// -proxy) → logging (with -log.requests) → instrumenting. It returns the
// service, its readiness and a function that stops the proxy's discovery.
func newService(cfg config, m *metrics, dm *discoveryMetrics, logger log.Logger) (
	svc StringService, ready func() bool, stop func(), err error) {
	svc, ready, stop = stringService{}, func() bool { return true }, func() {}
	if cfg.proxy != "" {
		var proxying ServiceMiddleware
		if proxying, ready, stop, err = newProxy(cfg, m, dm, logger); err != nil {
			return nil, nil, nil, usageError{err}
		}
		svc = proxying(svc)
	}
	if cfg.logRequests {
		svc = loggingMiddleware{logger: logger, next: svc}
	}
	return newInstrumentingMiddleware(m)(svc), ready, stop, nil
}

// listen binds -listen and, if set, -grpc.listen (grpcLn is nil without
// it), and logs the bound addresses.
func listen(cfg config, logger log.Logger) (ln, grpcLn net.Listener, err error) {
	if ln, err = net.Listen("tcp", cfg.listen); err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	logger.Log("msg", "listening", "addr", ln.Addr(), "proxy", cfg.proxy)
	if cfg.grpcListen == "" {
		return ln, nil, nil
	}
	if grpcLn, err = net.Listen("tcp", cfg.grpcListen); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("listen on -grpc.listen %s: %w", cfg.grpcListen, err)
	}
	logger.Log("msg", "grpc listening", "addr", grpcLn.Addr())
	return ln, grpcLn, nil
}

// addDrainDelay adds to g an actor whose interrupt sets draining (so
// /readyz answers 503) and reports *hs, if any, NOT_SERVING, then waits
// delay while the servers, interrupted after it, still serve: load
// balancers and Kubernetes that poll readiness stop sending before the
// listeners close.
func addDrainDelay(g *group.Group, delay time.Duration, draining *atomic.Bool, hs **grpchealth.Server,
	logger log.Logger) {
	stop := make(chan struct{})
	g.Add(func() error {
		<-stop
		return nil
	}, func(error) {
		draining.Store(true)
		if *hs != nil {
			(*hs).SetReady(false)
		}
		logger.Log("msg", "not ready, serving on before the drain", "delay", delay)
		time.Sleep(delay) // a fixed wait by design: nothing to wait for but time
		close(stop)
	})
}

// addHTTPServer adds to g an actor serving srv on ln that, on interrupt,
// lets the requests in flight finish for up to timeout, then closes what is
// left.
func addHTTPServer(g *group.Group, srv httpServer, ln net.Listener, timeout time.Duration,
	logger log.Logger) {
	g.Add(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		// A fresh context: run's is already done, and in-flight requests
		// deserve their full grace period.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			logger.Log("msg", "shutdown timed out, closing connections", "err", err)
			srv.Close()
		}
	})
}

// advertised returns the address and scheme the registration gives
// proxies: -advertise or the bound HTTP address, or, with
// -registry.transport grpc, -grpc.advertise or the bound gRPC address.
func advertised(cfg config, httpAddr net.Addr, grpcLn net.Listener) (advertise, scheme string) {
	if cfg.registryTransport == "grpc" {
		if cfg.grpcAdvertise != "" {
			return cfg.grpcAdvertise, "grpc"
		}
		return grpcLn.Addr().String(), "grpc"
	}
	if cfg.Advertise != "" {
		return cfg.Advertise, ""
	}
	return httpAddr.String(), ""
}

// httpServer is what run needs of an HTTP server: *h1.Server and
// *http.Server both are one.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// newHTTPServer returns the server -http.server names, with every timeout
// set: a client that stalls mid-headers is cut off after
// -http.read-header-timeout. h1 is the default because with it a proxy hop
// costs about what nginx's does (0.87 of nginx's throughput in front of the
// same backends, against 0.76 on net/http's server); net/http, the
// conservative choice, stays one flag away.
func newHTTPServer(cfg config, handler http.Handler, logger log.Logger) httpServer {
	errorLog := stdlog.New(log.NewStdlibAdapter(log.With(logger, "component", "http")), "", 0)
	if cfg.httpServer == "net/http" {
		return &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: cfg.readHeaderTimeout,
			ReadTimeout:       cfg.readTimeout,
			WriteTimeout:      cfg.writeTimeout,
			IdleTimeout:       cfg.idleTimeout,
			MaxHeaderBytes:    cfg.maxHeaderBytes,
			ErrorLog:          errorLog,
		}
	}
	return &h1.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		ReadTimeout:       cfg.readTimeout,
		WriteTimeout:      cfg.writeTimeout,
		IdleTimeout:       cfg.idleTimeout,
		MaxHeaderBytes:    cfg.maxHeaderBytes,
		ErrorLog:          errorLog,
	}
}

// buildVersion reports the module version and VCS revision the binary was
// built from.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v
}

// shutdownGrace is how long the debug server gets to close.
const shutdownGrace = time.Second
