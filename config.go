package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// config is everything run needs to know, from flags and environment.
type config struct {
	listen, proxy     string
	logFormat         string
	logFlushInterval  time.Duration
	logRequests       bool
	version           bool
	maxBodyBytes      int64
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	httpServer        string
	shutdownTimeout   time.Duration
	debugListen       string
	proxyConfig
	discoveryConfig
}

// usageError is a mistake on the command line or in the environment; main
// exits 2 for it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// envName is the environment variable that sets a flag when the command
// line does not: -proxy.attempt-timeout → STRINGSVC_PROXY_ATTEMPT_TIMEOUT.
func envName(flagName string) string {
	return "STRINGSVC_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flagName))
}

// parseConfig reads the flags, with environment variables as fallbacks. For
// -h it prints the usage to stdout and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("stringsvc", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned as one line, not printed with the usage
	fs.StringVar(&cfg.listen, "listen", ":8080", "HTTP listen address")
	fs.StringVar(&cfg.proxy, "proxy", "", "where to forward /uppercase: comma-separated instances (host:port or http://host:port[/path]), "+
		"etcd://host:port[,host:port...] (the instances registered under -service.name) or dns+srv://name (SRV records); empty serves locally")
	fs.StringVar(&cfg.logFormat, "log.format", "logfmt", "log format: logfmt or json")
	fs.BoolVar(&cfg.logRequests, "log.requests", true, "log one line per request (-log.requests=false keeps only lifecycle lines)")
	fs.DurationVar(&cfg.logFlushInterval, "log.flush-interval", 100*time.Millisecond, "how often buffered log lines are written out (all are written on shutdown)")
	fs.BoolVar(&cfg.version, "version", false, "print the version and exit")
	fs.Int64Var(&cfg.maxBodyBytes, "http.max-body-bytes", 1<<20, "largest request body accepted; larger gets 413")
	fs.DurationVar(&cfg.readHeaderTimeout, "http.read-header-timeout", 5*time.Second, "time allowed to read request headers")
	fs.DurationVar(&cfg.readTimeout, "http.read-timeout", 10*time.Second, "time allowed to read a whole request")
	fs.DurationVar(&cfg.writeTimeout, "http.write-timeout", 10*time.Second, "time allowed from the end of the request headers to the end of the response")
	fs.DurationVar(&cfg.idleTimeout, "http.idle-timeout", 60*time.Second, "how long an idle keep-alive connection stays open")
	fs.IntVar(&cfg.maxHeaderBytes, "http.max-header-bytes", 64<<10, "largest request header block accepted")
	fs.StringVar(&cfg.httpServer, "http.server", "h1", "HTTP server: h1 (lean HTTP/1.1, internal/h1) or net/http")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown.timeout", 10*time.Second, "how long in-flight requests may run after SIGINT/SIGTERM")
	fs.StringVar(&cfg.debugListen, "debug.listen", "", "address serving net/http/pprof (e.g. 127.0.0.1:6060); empty disables it")
	fs.StringVar(&cfg.Balancer, "proxy.balancer", "roundrobin", "load balancer: roundrobin or random")
	fs.IntVar(&cfg.Attempts, "proxy.attempts", 3, "attempts per proxied request (first try included)")
	fs.DurationVar(&cfg.AttemptTimeout, "proxy.attempt-timeout", 100*time.Millisecond, "time allowed to one attempt")
	fs.DurationVar(&cfg.Timeout, "proxy.timeout", 500*time.Millisecond, "time allowed to all attempts of a request together")
	fs.Float64Var(&cfg.QPS, "proxy.qps", 10000, "requests per second per instance (0: unlimited); past it, requests go to another instance")
	fs.IntVar(&cfg.Burst, "proxy.burst", 1000, "requests per instance allowed at once above -proxy.qps")
	fs.Func("proxy.breaker.failures", "consecutive failures that open an instance's breaker (default 5)", uintFlag(&cfg.BreakerFailures))
	cfg.BreakerFailures = 5
	fs.Float64Var(&cfg.BreakerRatio, "proxy.breaker.ratio", 0.5, "failure ratio that opens a breaker, once -proxy.breaker.min-requests were seen")
	fs.Func("proxy.breaker.min-requests", "requests in an interval before -proxy.breaker.ratio applies (default 20)", uintFlag(&cfg.BreakerMinRequests))
	cfg.BreakerMinRequests = 20
	fs.DurationVar(&cfg.BreakerInterval, "proxy.breaker.interval", 10*time.Second, "window after which a closed breaker forgets its counts (0: never)")
	fs.DurationVar(&cfg.BreakerCooldown, "proxy.breaker.cooldown", 5*time.Second, "how long a breaker stays open before it lets one probe through")
	fs.IntVar(&cfg.MaxIdleConnsPerHost, "proxy.max-idle-conns", 256, "kept-alive connections per instance")
	fs.StringVar(&cfg.Registry, "registry", "", "etcd to register this instance in while it runs: etcd://host:port[,host:port...]; empty: do not register")
	fs.StringVar(&cfg.Advertise, "advertise", "", "host:port proxies reach this instance at (default: the bound -listen address, which then needs a specific host)")
	fs.StringVar(&cfg.ServiceName, "service.name", "stringsvc", "service name: instances register under, and -proxy etcd:// follows, the etcd prefix /services/<name>/")
	fs.DurationVar(&cfg.RegistryTTL, "registry.ttl", 10*time.Second, "lease TTL of the registration, in whole seconds: an instance that dies without deregistering disappears after it")
	fs.DurationVar(&cfg.RegistryTimeout, "registry.timeout", 10*time.Second, "how long the first registration may take, retries included, before the program exits with an error")
	fs.DurationVar(&cfg.RegistryResync, "registry.resync", 5*time.Second, "how often -proxy etcd:// re-reads all instances, besides watching them, and so notices an unreachable etcd")
	fs.StringVar(&cfg.DNSServer, "dns.server", "", "DNS server (host[:port]) that resolves -proxy dns+srv:// names; empty: the system resolver")
	fs.DurationVar(&cfg.DNSRefresh, "dns.refresh", 5*time.Second, "how often -proxy dns+srv:// resolves its name again")

	// The environment first, then the command line over it: a bad value in
	// the environment is an error only for a flag the command line leaves
	// alone.
	envErrs := make(map[string]error)
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErrs[f.Name] = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stdout)
			return cfg, err
		}
		return cfg, usageError{err}
	}
	fs.Visit(func(f *flag.Flag) { delete(envErrs, f.Name) }) // set on the command line
	var envErr error
	fs.VisitAll(func(f *flag.Flag) { // the first by name (VisitAll sorts), for a stable message
		if err := envErrs[f.Name]; err != nil && envErr == nil {
			envErr = err
		}
	})
	if envErr != nil {
		return cfg, usageError{envErr}
	}
	if fs.NArg() > 0 {
		return cfg, usageError{fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))}
	}
	if err := cfg.validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

func (cfg config) validate() error {
	switch {
	case cfg.logFormat != "logfmt" && cfg.logFormat != "json":
		return fmt.Errorf("-log.format %q: want logfmt or json", cfg.logFormat)
	case cfg.logFlushInterval <= 0:
		return errors.New("-log.flush-interval must be positive")
	case cfg.maxBodyBytes < 1:
		return errors.New("-http.max-body-bytes: want at least 1")
	case cfg.maxHeaderBytes < 1:
		return errors.New("-http.max-header-bytes: want at least 1")
	case cfg.httpServer != "h1" && cfg.httpServer != "net/http":
		return fmt.Errorf("-http.server %q: want h1 or net/http", cfg.httpServer)
	case cfg.shutdownTimeout <= 0:
		return errors.New("-shutdown.timeout must be positive")
	case cfg.Balancer != "roundrobin" && cfg.Balancer != "random":
		return fmt.Errorf("-proxy.balancer %q: want roundrobin or random", cfg.Balancer)
	}
	if err := validateDiscovery(cfg); err != nil {
		return err
	}
	if cfg.proxy == "" {
		return nil
	}
	if _, err := parseProxyTarget(cfg.proxy); err != nil {
		return fmt.Errorf("-proxy: %w", err)
	}
	return validateProxyConfig(cfg.proxyConfig)
}

func uintFlag(p *uint32) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		*p = uint32(v)
		return nil
	}
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: stringsvc [flags]\n\n"+
		"Serves /uppercase and /count; with -proxy, forwards /uppercase to other instances.\n"+
		"Every flag can also be set in the environment: -proxy.attempt-timeout as %s.\n\n",
		envName("proxy.attempt-timeout"))
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
