package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/dnssrv"
	"github.com/go-kit/log"
	group "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
)

// discoveryConfig says where this instance registers itself and how a proxy
// follows a registry. run fills it from flags; every field has a documented
// default there.
type discoveryConfig struct {
	Registry        string        // etcd://host:port[,host:port...]; empty: do not register
	Advertise       string        // host:port proxies dial; empty: the bound -listen address
	ServiceName     string        // instances live under the etcd prefix /services/<ServiceName>/
	RegistryTTL     time.Duration // lease TTL of the registration, rounded up to whole seconds
	RegistryTimeout time.Duration // bound of the first registration, retries included
	RegistryResync  time.Duration // how often a proxy re-reads the whole prefix
	DNSServer       string        // host[:port] resolving dns+srv:// names; empty: the system resolver
	DNSRefresh      time.Duration // how often a dns+srv:// name is resolved again
}

// servicePrefix is the etcd key prefix of a service's instances. Each
// instance is one key, /services/<name>/<advertise>, whose value is the
// advertised host:port.
func servicePrefix(name string) string { return "/services/" + name + "/" }

// proxyTarget is what -proxy names: a fixed instance list, an etcd cluster
// whose registered instances to follow, or a DNS SRV name to resolve.
type proxyTarget struct {
	instances []string // a fixed list
	etcd      []string // etcd endpoints
	srvName   string   // a DNS SRV name
}

// parseProxyTarget dispatches -proxy on its scheme: etcd://, dns+srv://, or
// else a fixed list.
func parseProxyTarget(s string) (proxyTarget, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case ok && scheme == "etcd":
		endpoints, err := parseEtcdEndpoints(rest)
		return proxyTarget{etcd: endpoints}, err
	case ok && scheme == "dns+srv":
		name, err := parseSRVName(rest)
		return proxyTarget{srvName: name}, err
	case ok && scheme != "http" && scheme != "https":
		return proxyTarget{}, fmt.Errorf("unknown scheme %q: want host:port[,...], http(s)://host:port[,...], "+
			"etcd://host:port[,...] or dns+srv://name", scheme)
	}
	instances, err := splitInstances(s)
	return proxyTarget{instances: instances}, err
}

// parseRegistry parses -registry, etcd://host:port[,host:port...], into
// etcd endpoints.
func parseRegistry(s string) ([]string, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return nil, fmt.Errorf("%q: want etcd://host:port[,host:port...]", s)
	}
	return parseEtcdEndpoints(rest)
}

// parseEtcdEndpoints parses the part after etcd://: comma-separated
// host:port, each of which may also carry its own etcd:// prefix.
func parseEtcdEndpoints(list string) ([]string, error) {
	var endpoints []string
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimPrefix(strings.TrimSpace(e), "etcd://")
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" || !validPort(port) {
			return nil, fmt.Errorf("etcd endpoint %q: want host:port (etcd://host:port[,host:port...])", e)
		}
		endpoints = append(endpoints, e)
	}
	return endpoints, nil
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 1<<16
}

// parseSRVName checks the part after dns+srv://, such as
// _http._tcp.stringsvc.default.svc.cluster.local.
func parseSRVName(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/:,? ") {
		return "", fmt.Errorf("dns+srv name %q: want dns+srv://_service._proto.domain, no port or path", name)
	}
	return name, nil
}

// validateDiscovery rejects discovery settings that cannot work.
func validateDiscovery(cfg config) error {
	d := cfg.discoveryConfig
	switch {
	case d.ServiceName == "" || strings.ContainsAny(d.ServiceName, "/ "):
		return fmt.Errorf("-service.name %q: want a non-empty name without / or spaces", d.ServiceName)
	case d.RegistryTTL < time.Second:
		return fmt.Errorf("-registry.ttl %v: want at least 1s", d.RegistryTTL)
	case d.RegistryTimeout <= 0 || d.RegistryResync <= 0 || d.DNSRefresh <= 0:
		return errors.New("-registry.timeout, -registry.resync and -dns.refresh must be positive")
	}
	if d.DNSServer != "" {
		if _, err := dnsServerAddr(d.DNSServer); err != nil {
			return err
		}
	}
	if d.Registry == "" {
		return nil
	}
	if _, err := parseRegistry(d.Registry); err != nil {
		return fmt.Errorf("-registry %w", err)
	}
	if strings.HasPrefix(cfg.proxy, "etcd://") {
		return errors.New("-registry with -proxy etcd://: " +
			"the proxy would register itself among the instances it forwards to")
	}
	if d.Advertise != "" {
		if _, _, err := net.SplitHostPort(d.Advertise); err != nil {
			return fmt.Errorf("-advertise %q: want host:port", d.Advertise)
		}
		if _, err := parseInstance(d.Advertise); err != nil {
			return fmt.Errorf("-advertise: %w", err)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(cfg.listen)
	if ip := net.ParseIP(host); err != nil || host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("-advertise is required with -registry when -listen %q has no specific host",
			cfg.listen)
	}
	return nil
}

// dnsServerAddr returns -dns.server as host:port, port 53 if it has none.
func dnsServerAddr(s string) (string, error) {
	if host, port, err := net.SplitHostPort(s); err == nil {
		if host == "" || !validPort(port) {
			return "", fmt.Errorf("-dns.server %q: want host[:port]", s)
		}
		return s, nil
	}
	if strings.ContainsAny(s, "/:, ") {
		return "", fmt.Errorf("-dns.server %q: want host[:port]", s)
	}
	return net.JoinHostPort(s, "53"), nil
}

// discoveryMetrics are the collectors of registration and discovery,
// registered on run's registry beside the others.
type discoveryMetrics struct {
	instances     *prometheus.GaugeVec
	errors        *prometheus.CounterVec
	stale         *prometheus.GaugeVec
	registrations prometheus.Counter
	registered    prometheus.Gauge
}

func newDiscoveryMetrics(reg prometheus.Registerer) *discoveryMetrics {
	m := &discoveryMetrics{
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stringsvc_discovery_instances",
			Help: "Instances the registry (source etcd or dns) last reported to this proxy.",
		}, []string{"source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stringsvc_discovery_errors_total",
			Help: "Failed registry calls (reads, watches, registrations, lookups), by source.",
		}, []string{"source"}),
		stale: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stringsvc_discovery_stale",
			Help: "1 while the registry is unreachable and the proxy serves from the last known instances.",
		}, []string{"source"}),
		registrations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stringsvc_registrations_total",
			Help: "Times this instance registered itself in etcd (again after a lost lease included).",
		}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stringsvc_registered",
			Help: "1 while this instance's registration lease is kept alive.",
		}),
	}
	reg.MustRegister(m.instances, m.errors, m.stale, m.registrations, m.registered)
	return m
}

// newEndpointer returns the endpoints of the instances -proxy names, each
// built by ups.Factory, and a function that stops following the registry.
// A registry is followed through go-kit's sd.NewEndpointer, which closes the
// endpoint of an instance that goes away and keeps the last set when the
// registry reports an error.
func newEndpointer(cfg config, ups *upstreams, dm *discoveryMetrics, logger log.Logger) (
	sd.Endpointer, func(), error) {
	target, err := parseProxyTarget(cfg.proxy)
	if err != nil {
		return nil, nil, err
	}
	if target.instances != nil {
		endpointer, err := ups.fixedEndpointer(target.instances)
		return endpointer, func() {}, err
	}
	logger = log.With(logger, "component", "discovery")
	var (
		instancer sd.Instancer
		source    string
		closeAll  = func() {}
	)
	switch {
	case target.etcd != nil:
		client, err := newEtcdClient(target.etcd)
		if err != nil {
			return nil, nil, err
		}
		source, closeAll = "etcd", func() { closeEtcdClient(client, logger) }
		instancer = newEtcdInstancer(client, servicePrefix(cfg.ServiceName), cfg.RegistryResync,
			dm.errors.WithLabelValues(source), logger)
	default:
		server := ""
		if cfg.DNSServer != "" {
			if server, err = dnsServerAddr(cfg.DNSServer); err != nil {
				return nil, nil, err
			}
		}
		source = "dns"
		instancer = dnssrv.NewInstancerDetailed(target.srvName, time.NewTicker(cfg.DNSRefresh),
			lookupSRVAddrs(newResolver(server), dm.errors.WithLabelValues(source)), logger)
	}
	stopObserving := observeInstancer(instancer, source, dm, logger)
	endpointer := sd.NewEndpointer(instancer, ups.Factory, logger)
	return endpointer, func() {
		endpointer.Close()
		stopObserving()
		instancer.Stop()
		closeAll()
	}, nil
}

// observeInstancer mirrors src's events into the discovery metrics and logs
// changes, so that an operator sees when the proxy serves from a set the
// registry can no longer confirm. It returns a function that stops it.
func observeInstancer(src sd.Instancer, source string, dm *discoveryMetrics,
	logger log.Logger) (stop func()) {
	events := make(chan sd.Event)
	done := make(chan struct{})
	instances, stale := dm.instances.WithLabelValues(source), dm.stale.WithLabelValues(source)
	go func() {
		defer close(done)
		var (
			known   []string
			isStale bool
		)
		for ev := range events {
			if ev.Err != nil {
				if !isStale {
					isStale = true
					stale.Set(1)
					logger.Log("msg", "registry unreachable, serving the last known instances",
						"source", source, "instances", len(known), "err", ev.Err)
				}
				continue
			}
			if isStale {
				isStale = false
				stale.Set(0)
				logger.Log("msg", "registry reachable again", "source", source, "instances", len(ev.Instances))
			}
			if !slices.Equal(ev.Instances, known) {
				logger.Log("msg", "instances changed", "source", source, "instances", len(ev.Instances))
			}
			known = ev.Instances
			instances.Set(float64(len(known)))
		}
	}()
	src.Register(events)
	return func() {
		src.Deregister(events)
		close(events)
		<-done
	}
}

// dnsTimeout bounds one resolution of a dns+srv:// name, targets included.
const dnsTimeout = 3 * time.Second

// newResolver returns a resolver asking server (host:port), or the system
// resolver if server is empty.
func newResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// lookupSRVAddrs returns a dnssrv.Lookup that resolves the SRV records and
// then each target with the same resolver, so that instances are ip:port:
// the HTTP client dials with the system resolver, which may not know the
// names -dns.server serves. A name that does not exist is an empty set, not
// an error: the server answered that there are no instances. Any other
// failure is an error, on which dnssrv keeps the last set.
func lookupSRVAddrs(r *net.Resolver, errs prometheus.Counter) dnssrv.Lookup {
	return func(_, _, name string) (string, []*net.SRV, error) {
		ctx, cancel := context.WithTimeout(context.Background(), dnsTimeout)
		defer cancel()
		addrs, err := resolveSRV(ctx, r, name)
		if err != nil {
			errs.Inc()
		}
		return "", addrs, err
	}
}

func resolveSRV(ctx context.Context, r *net.Resolver, name string) ([]*net.SRV, error) {
	_, records, err := r.LookupSRV(ctx, "", "", name)
	if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var addrs []*net.SRV
	for _, rec := range records {
		hosts, err := r.LookupHost(ctx, strings.TrimSuffix(rec.Target, "."))
		if err != nil {
			return nil, fmt.Errorf("resolve SRV target %s: %w", rec.Target, err)
		}
		for _, h := range hosts {
			addr := &net.SRV{Target: h, Port: rec.Port}
			if !slices.ContainsFunc(addrs, func(a *net.SRV) bool { return *a == *addr }) {
				addrs = append(addrs, addr)
			}
		}
	}
	return addrs, nil
}

// addRegistrar adds to g an actor that registers this instance in etcd,
// keeps it registered while the group runs, and deregisters it when the
// group stops. Add it before the HTTP server: run.Group interrupts actors in
// the order they were added, so the instance leaves the registry, and
// proxies stop sending it new work, before the server stops accepting.
func addRegistrar(g *group.Group, cfg discoveryConfig, listenAddr net.Addr, dm *discoveryMetrics,
	logger log.Logger) error {
	endpoints, err := parseRegistry(cfg.Registry)
	if err != nil {
		return fmt.Errorf("-registry %w", err)
	}
	advertise := cfg.Advertise
	if advertise == "" {
		advertise = listenAddr.String()
	}
	client, err := newEtcdClient(endpoints)
	if err != nil {
		return fmt.Errorf("-registry: %w", err)
	}
	r := &etcdRegistrar{
		client:  client,
		key:     servicePrefix(cfg.ServiceName) + advertise,
		value:   advertise,
		ttl:     cfg.RegistryTTL,
		metrics: dm,
		logger:  log.With(logger, "component", "registrar", "registry", cfg.Registry),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.Add(func() error {
		defer close(done)
		defer closeEtcdClient(client, logger)
		if err := r.Run(ctx, cfg.RegistryTimeout); err != nil {
			return fmt.Errorf("-registry %s: %w", cfg.Registry, err)
		}
		return nil
	}, func(error) {
		cancel()
		<-done // deregistered
	})
	return nil
}
