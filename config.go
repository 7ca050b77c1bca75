package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"stringsvc/internal/tracing"
)

// config is everything run needs to know, from flags and environment,
// parsed and validated once: construction code never parses a string of it
// again.
type config struct {
	listen            string
	proxy             string      // -proxy as given, for the logs
	target            proxyTarget // -proxy parsed; its zero value serves locally
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
	shutdownDelay     time.Duration // not ready, still serving, before the drain
	debugListen       string
	grpcListen        string         // empty: no gRPC
	grpcAdvertise     string         // host:port proxies reach the gRPC server at
	registryTransport string         // what the registration advertises: "http" or "grpc"
	grpc              grpcOptions    // MaxRecvMsgSize is set from maxBodyBytes
	otel              tracing.Config // its zero value traces nothing
	proxyConfig
	discoveryConfig
}

// proxyConfig tunes the proxying middleware. Every field but Tracer has a
// documented default in parseConfig.
type proxyConfig struct {
	Balancer       string        // "roundrobin", "random" or "p2c"
	Attempts       int           // attempts per request, at least 1
	AttemptTimeout time.Duration // bound of one attempt
	Timeout        time.Duration // bound of all attempts together

	RetryBudget    float64       // retries per request allowed over a 10s window
	RetryBudgetMin float64       // retries per second always allowed
	RetryBackoff   time.Duration // base of the jittered exponential backoff; 0: none
	HedgeAfter     time.Duration // hedge an attempt unanswered this long; 0: never
	HedgeBudget    float64       // hedges per request allowed over a 10s window

	QPS   float64 // sustained requests/s per instance; 0 means no limit
	Burst int     // requests per instance allowed at once above QPS

	BreakerFailures    uint32        // consecutive failures that open a breaker
	BreakerRatio       float64       // failure ratio that opens a breaker...
	BreakerMinRequests uint32        // ...once an interval has seen this many requests
	BreakerInterval    time.Duration // closed-state window for the counts; 0 never clears them
	BreakerCooldown    time.Duration // open time before a probe

	MaxIdleConnsPerHost int // kept-alive connections per instance

	// Tracer, set by run when tracing is on, gives each call to an instance
	// a client span whose context is sent along; nil: no spans, and
	// nothing is sent.
	Tracer trace.Tracer
}

// discoveryConfig says where this instance registers itself and how a proxy
// follows a registry. Every field has a documented default in parseConfig.
type discoveryConfig struct {
	Registry        registryAddr  // where to register; zero: do not register
	RegistryToken   string        // Consul ACL token; empty: none
	RegistryTags    []string      // Consul tags of the registration
	ProxyTag        string        // -proxy consul:// follows only instances with this tag; empty: all
	CheckInterval   time.Duration // Consul health check interval
	CheckTimeout    time.Duration // Consul health check timeout
	DeregisterAfter time.Duration // Consul removes a critical instance after this
	ZKSession       time.Duration // ZooKeeper session timeout
	EmptyGrace      time.Duration // how long an update removing every instance must hold
	Advertise       string        // host:port proxies dial; empty: the bound -listen address
	ServiceName     string        // instances live under the etcd prefix /services/<ServiceName>/
	RegistryTTL     time.Duration // lease TTL of the registration, rounded up to whole seconds
	RegistryTimeout time.Duration // bound of the first registration, retries included
	RegistryResync  time.Duration // how often a proxy re-reads the whole prefix
	DNSServer       string        // host:port resolving dns+srv:// names; empty: the system resolver
	DNSRefresh      time.Duration // how often a dns+srv:// name is resolved again
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
		"etcd://host:port[,...], consul://host:port or zk://host:port[,...] (the instances registered under -service.name) "+
		"or dns+srv://name (SRV records); empty serves locally")
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
	fs.DurationVar(&cfg.shutdownDelay, "shutdown.delay", 0, "after SIGINT/SIGTERM and deregistering, how long /readyz answers 503 and gRPC health NOT_SERVING while both servers still serve, before they drain (0: drain at once)")
	fs.StringVar(&cfg.debugListen, "debug.listen", "", "address serving net/http/pprof (e.g. 127.0.0.1:6060); empty disables it")
	fs.StringVar(&cfg.grpcListen, "grpc.listen", "", "gRPC listen address (e.g. 127.0.0.1:9090), served beside HTTP; empty: no gRPC")
	fs.StringVar(&cfg.grpcAdvertise, "grpc.advertise", "", "host:port proxies reach the gRPC server at (default: the bound -grpc.listen address, which then needs a specific host)")
	fs.Func("grpc.max-streams", "gRPC calls in flight per connection (default 100)", uintFlag(&cfg.grpc.MaxConcurrentStreams))
	cfg.grpc.MaxConcurrentStreams = 100
	fs.DurationVar(&cfg.grpc.KeepaliveMinTime, "grpc.keepalive.min-time", 10*time.Second, "shortest interval between a client's keepalive pings; a client pinging more often is disconnected")
	fs.DurationVar(&cfg.grpc.KeepaliveTime, "grpc.keepalive.time", time.Minute, "ping a gRPC connection that has been silent this long")
	fs.DurationVar(&cfg.grpc.KeepaliveTimeout, "grpc.keepalive.timeout", 20*time.Second, "close a gRPC connection whose ping is unanswered this long")
	fs.StringVar(&cfg.registryTransport, "registry.transport", "http", "what -registry advertises: http (the -advertise address) or grpc (grpc://<-grpc.advertise>, needs -grpc.listen)")
	var otel tracing.Flags
	fs.StringVar(&otel.Endpoint, "otel.endpoint", "", "OpenTelemetry: OTLP collector URL traces are exported to, e.g. http://127.0.0.1:4318 "+
		"(a URL without a path gets /v1/traces); default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT; empty: no tracing")
	fs.StringVar(&otel.Protocol, "otel.protocol", "", "OTLP protocol: http/protobuf or grpc "+
		"(default $OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf)")
	fs.Func("otel.sample-ratio", "share of the traces started here that are sampled, 0 to 1; a request with a traceparent "+
		"follows its caller's decision (default from $OTEL_TRACES_SAMPLER and $OTEL_TRACES_SAMPLER_ARG, else 1)", otel.SampleRatio.Set)
	fs.StringVar(&cfg.Balancer, "proxy.balancer", "p2c", "load balancer: p2c (the less loaded of two: peak-EWMA latency × in-flight), roundrobin or random")
	fs.IntVar(&cfg.Attempts, "proxy.attempts", 3, "attempts per proxied request (first try included)")
	fs.DurationVar(&cfg.AttemptTimeout, "proxy.attempt-timeout", 100*time.Millisecond, "time allowed to one attempt")
	fs.DurationVar(&cfg.Timeout, "proxy.timeout", 500*time.Millisecond, "time allowed to all attempts of a request together")
	fs.Float64Var(&cfg.RetryBudget, "proxy.retry-budget", 0.2, "retries allowed per request, over a 10s window, besides -proxy.retry-budget-min")
	fs.Float64Var(&cfg.RetryBudgetMin, "proxy.retry-budget-min", 10, "retries per second always allowed")
	fs.DurationVar(&cfg.RetryBackoff, "proxy.retry-backoff", 2*time.Millisecond, "base delay before a retry: retry n waits a random time up to base·2^(n-1), never past the deadline (0: none)")
	fs.DurationVar(&cfg.HedgeAfter, "proxy.hedge-after", 0, "send a second attempt to another instance when the first has not answered after this long (0: never)")
	fs.Float64Var(&cfg.HedgeBudget, "proxy.hedge-budget", 0.05, "hedged attempts allowed per request, over a 10s window")
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
	var registry, dnsServer string
	fs.StringVar(&registry, "registry", "", "registry to register this instance in while it runs: etcd://host:port[,...], consul://host:port (the local agent) or zk://host:port[,...]; empty: do not register")
	fs.StringVar(&cfg.Advertise, "advertise", "", "host:port proxies reach this instance at (default: the bound -listen address, which then needs a specific host)")
	fs.StringVar(&cfg.ServiceName, "service.name", "stringsvc", "service name: instances register, and -proxy etcd://, consul:// or zk:// follows them, under this name (etcd and ZooKeeper: /services/<name>/)")
	fs.DurationVar(&cfg.RegistryTTL, "registry.ttl", 10*time.Second, "lease TTL of the registration, in whole seconds: an instance that dies without deregistering disappears after it")
	fs.DurationVar(&cfg.RegistryTimeout, "registry.timeout", 10*time.Second, "how long the first registration may take, retries included, before the program exits with an error")
	fs.DurationVar(&cfg.RegistryResync, "registry.resync", 5*time.Second, "how often -proxy etcd:// re-reads all instances, besides watching them, and so notices an unreachable etcd")
	var tags string
	fs.StringVar(&cfg.RegistryToken, "registry.token", "", "Consul ACL token (default $CONSUL_HTTP_TOKEN)")
	fs.StringVar(&tags, "registry.tags", "", "comma-separated Consul tags of this instance's registration")
	fs.StringVar(&cfg.ProxyTag, "proxy.tag", "", "-proxy consul:// follows only the passing instances with this Consul tag; empty: all")
	fs.DurationVar(&cfg.CheckInterval, "registry.check-interval", 10*time.Second, "Consul: how often the agent checks GET /readyz; also how often the registration is verified")
	fs.DurationVar(&cfg.CheckTimeout, "registry.check-timeout", 5*time.Second, "Consul: time allowed to one health check")
	fs.DurationVar(&cfg.DeregisterAfter, "registry.deregister-after", time.Minute, "Consul: an instance critical this long is removed (Consul's floor is 1m)")
	fs.DurationVar(&cfg.ZKSession, "registry.zk-session-timeout", 5*time.Second, "ZooKeeper session timeout: a dead instance's node goes away after it")
	fs.DurationVar(&cfg.EmptyGrace, "registry.empty-grace", 5*time.Second, "how long a registry update that removes every instance must hold before the proxy applies it (0: at once)")
	fs.StringVar(&dnsServer, "dns.server", "", "DNS server (host[:port]) that resolves -proxy dns+srv:// names; empty: the system resolver")
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
	if cfg.RegistryToken == "" {
		cfg.RegistryToken = getenv("CONSUL_HTTP_TOKEN")
	}
	cfg.RegistryTags = splitList(tags)
	if err := cfg.parse(registry, dnsServer); err != nil {
		return cfg, usageError{err}
	}
	var err error
	if cfg.otel, err = tracing.ParseConfig(otel, cfg.ServiceName, getenv); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// parse turns the flags that are strings into typed values and checks every
// value; the first problem is the error.
func (cfg *config) parse(registry, dnsServer string) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	var err error
	if dnsServer != "" {
		if cfg.DNSServer, err = parseDNSServer(dnsServer); err != nil {
			return err
		}
	}
	if registry != "" {
		if cfg.Registry, err = parseRegistry(registry); err != nil {
			return fmt.Errorf("-registry %w", err)
		}
		if err := cfg.validateRegistration(); err != nil {
			return err
		}
	}
	if cfg.proxy == "" {
		return nil
	}
	if cfg.target, err = parseProxyTarget(cfg.proxy); err != nil {
		return fmt.Errorf("-proxy: %w", err)
	}
	if cfg.Registry.kind != "" && cfg.target.registry.kind == cfg.Registry.kind {
		return fmt.Errorf("-registry with -proxy %s://: "+
			"the proxy would register itself among the instances it forwards to", cfg.Registry.kind)
	}
	return nil
}

// validate checks the values that need no parsing.
func (cfg config) validate() error {
	d, p := cfg.discoveryConfig, cfg.proxyConfig
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
	case cfg.shutdownDelay < 0:
		return errors.New("-shutdown.delay: want 0 or more")
	case cfg.shutdownTimeout <= 0:
		return errors.New("-shutdown.timeout must be positive")
	case cfg.grpc.MaxConcurrentStreams < 1:
		return errors.New("-grpc.max-streams: want at least 1")
	case cfg.grpc.KeepaliveMinTime <= 0 || cfg.grpc.KeepaliveTime <= 0 || cfg.grpc.KeepaliveTimeout <= 0:
		return errors.New("-grpc.keepalive.min-time, -grpc.keepalive.time and -grpc.keepalive.timeout must be positive")
	case cfg.grpc.KeepaliveMinTime > 30*time.Second:
		// A proxy's connection to an instance pings every 30s (dialGRPCInstance).
		return fmt.Errorf("-grpc.keepalive.min-time %v: want at most 30s, the proxies' ping interval", cfg.grpc.KeepaliveMinTime)
	case cfg.registryTransport != "http" && cfg.registryTransport != "grpc":
		return fmt.Errorf("-registry.transport %q: want http or grpc", cfg.registryTransport)
	case cfg.registryTransport == "grpc" && cfg.grpcListen == "":
		return errors.New("-registry.transport grpc needs -grpc.listen")
	case d.ServiceName == "" || strings.ContainsAny(d.ServiceName, "/ "):
		return fmt.Errorf("-service.name %q: want a non-empty name without / or spaces", d.ServiceName)
	case d.RegistryTTL < time.Second:
		return fmt.Errorf("-registry.ttl %v: want at least 1s", d.RegistryTTL)
	case d.RegistryTimeout <= 0 || d.RegistryResync <= 0 || d.DNSRefresh <= 0:
		return errors.New("-registry.timeout, -registry.resync and -dns.refresh must be positive")
	case d.CheckInterval <= 0 || d.CheckTimeout <= 0 || d.ZKSession <= 0:
		return errors.New("-registry.check-interval, -registry.check-timeout and -registry.zk-session-timeout must be positive")
	case d.DeregisterAfter < time.Minute:
		return fmt.Errorf("-registry.deregister-after %v: want at least 1m (Consul's floor)", d.DeregisterAfter)
	case d.EmptyGrace < 0:
		return fmt.Errorf("-registry.empty-grace %v: want 0 or more", d.EmptyGrace)
	case p.Balancer != "roundrobin" && p.Balancer != "random" && p.Balancer != "p2c":
		return fmt.Errorf("-proxy.balancer %q: want roundrobin, random or p2c", p.Balancer)
	case cfg.proxy == "":
		return nil // the other proxy settings matter only with -proxy
	}
	return validateProxy(p)
}

// validateProxy checks the proxy's settings.
func validateProxy(p proxyConfig) error {
	switch {
	case p.Attempts < 1:
		return fmt.Errorf("-proxy.attempts %d: want at least 1", p.Attempts)
	case p.AttemptTimeout <= 0 || p.Timeout <= 0:
		return errors.New("-proxy.attempt-timeout and -proxy.timeout must be positive")
	case p.QPS < 0 || math.IsNaN(p.QPS) || math.IsInf(p.QPS, 0):
		return fmt.Errorf("-proxy.qps %v: want a number >= 0", p.QPS)
	case p.QPS > 0 && p.Burst < 1:
		return fmt.Errorf("-proxy.burst %d: want at least 1", p.Burst)
	case p.BreakerFailures < 1:
		return errors.New("-proxy.breaker.failures: want at least 1")
	case p.BreakerRatio <= 0 || p.BreakerRatio > 1:
		return fmt.Errorf("-proxy.breaker.ratio %v: want a number in (0, 1]", p.BreakerRatio)
	case p.BreakerCooldown <= 0:
		return errors.New("-proxy.breaker.cooldown must be positive")
	case p.MaxIdleConnsPerHost < 1:
		return errors.New("-proxy.max-idle-conns: want at least 1")
	case !(p.RetryBudget >= 0) || math.IsInf(p.RetryBudget, 0) || !(p.RetryBudgetMin >= 0) || math.IsInf(p.RetryBudgetMin, 0):
		return errors.New("-proxy.retry-budget and -proxy.retry-budget-min: want numbers >= 0")
	case !(p.HedgeBudget >= 0) || p.HedgeBudget > 1:
		return fmt.Errorf("-proxy.hedge-budget %v: want a number in [0, 1]", p.HedgeBudget)
	case p.RetryBackoff < 0 || p.HedgeAfter < 0:
		return errors.New("-proxy.retry-backoff and -proxy.hedge-after: want 0 or more")
	}
	return nil
}

// validateRegistration checks what registering needs: an address proxies
// can reach this instance at.
func (cfg config) validateRegistration() error {
	if cfg.registryTransport == "grpc" {
		return validateAdvertise("-grpc.advertise", cfg.grpcAdvertise, "-grpc.listen", cfg.grpcListen)
	}
	return validateAdvertise("-advertise", cfg.Advertise, "-listen", cfg.listen)
}

// validateAdvertise checks an advertised address, or, when it is empty, that
// the listen address it defaults to has a specific host.
func validateAdvertise(flagName, advertise, listenFlag, listen string) error {
	if advertise != "" {
		if _, _, err := net.SplitHostPort(advertise); err != nil {
			return fmt.Errorf("%s %q: want host:port", flagName, advertise)
		}
		if _, err := parseInstance(advertise); err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err != nil || host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%s is required with -registry when %s %q has no specific host",
			flagName, listenFlag, listen)
	}
	return nil
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
