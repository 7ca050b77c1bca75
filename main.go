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
	"syscall"
	"time"

	"github.com/go-kit/log"
	group "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	stdlog "log"

	"stringsvc/internal/h1"
	"stringsvc/internal/logfmt"
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

	// The onion, inside out: service → proxying → logging → instrumenting.
	var svc StringService = stringService{}
	ready := func() bool { return true }
	if cfg.proxy != "" {
		proxying, proxyReady, stopProxy, err := newProxy(cfg, m, dm, logger)
		if err != nil {
			return usageError{err}
		}
		defer stopProxy()
		svc, ready = proxying(svc), proxyReady
	}
	if cfg.logRequests {
		svc = loggingMiddleware{logger: logger, next: svc}
	}
	svc = newInstrumentingMiddleware(m)(svc)
	handler := newHTTPHandler(makeUppercaseEndpoint(svc), makeCountEndpoint(svc), ready,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), cfg.maxBodyBytes,
		log.With(logger, "component", "http"))

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	defer ln.Close() // for a return before Serve; once serving, Shutdown closes it
	srv := newHTTPServer(cfg, handler, logger)
	logger.Log("msg", "listening", "addr", ln.Addr(), "proxy", cfg.proxy)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var g group.Group
	g.Add(func() error {
		<-ctx.Done()
		logger.Log("msg", "shutting down", "timeout", cfg.shutdownTimeout)
		return nil
	}, func(error) { stop() })
	if cfg.Registry.kind != "" {
		// Before the HTTP server: interrupts run in order, so the instance
		// is deregistered before the server stops accepting.
		if err := addRegistrar(&g, cfg.discoveryConfig, ln.Addr(), dm, logger); err != nil {
			return err
		}
	}
	g.Add(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		// A fresh context: ctx is already done, and in-flight requests
		// deserve their full grace period.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			logger.Log("msg", "shutdown timed out, closing connections", "err", err)
			srv.Close()
		}
	})
	if cfg.debugListen != "" {
		if err := addDebugServer(&g, cfg.debugListen, logger); err != nil {
			return err
		}
	}
	err = g.Run()
	logger.Log("msg", "stopped", "err", err)
	return err
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
