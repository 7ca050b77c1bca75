package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	group "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"stringsvc/internal/sd/consul"
	"stringsvc/internal/sd/dnssrv"
	"stringsvc/internal/sd/etcd"
	"stringsvc/internal/sd/instance"
	"stringsvc/internal/sd/zk"
)

// followInstances feeds factory the instances target names and returns a
// function that stops following them. A fixed list goes to factory once.
// A registry or DNS name is followed through go-kit's sd.NewEndpointer,
// which calls factory for each instance that appears, closes the endpoint
// of each that goes away, and keeps the last set when the registry reports
// an error.
func followInstances(target proxyTarget, cfg discoveryConfig, factory sd.Factory, dm *discoveryMetrics,
	logger log.Logger) (stop func(), err error) {
	if target.instances != nil {
		for _, instance := range target.instances {
			if _, _, err := factory(instance); err != nil {
				return nil, err
			}
		}
		return func() {}, nil
	}
	logger = log.With(logger, "component", "discovery")
	var (
		instancer sd.Instancer
		source    string
		closeAll  = func() {}
	)
	switch kind := target.registry.kind; kind {
	case "etcd":
		client, err := etcd.NewClient(target.registry.endpoints)
		if err != nil {
			return nil, err
		}
		source, closeAll = kind, func() { etcd.Close(client, logger) }
		instancer = etcd.NewInstancer(client, etcd.ServicePrefix(cfg.ServiceName), cfg.RegistryResync,
			dm.errors.WithLabelValues(source), logger)
	case "consul":
		client, err := consul.NewClient(target.registry.endpoints[0], cfg.RegistryToken)
		if err != nil {
			return nil, err
		}
		source, closeAll = kind, client.Close
		instancer = consul.NewInstancer(client, cfg.ServiceName, cfg.ProxyTag, 0,
			dm.errors.WithLabelValues(source), logger)
	case "zk":
		client, err := zk.NewClient(target.registry.endpoints, cfg.ZKSession, logger)
		if err != nil {
			return nil, err
		}
		source, closeAll = kind, client.Close
		instancer = zk.NewInstancer(client, cfg.ServiceName, cfg.RegistryResync,
			dm.errors.WithLabelValues(source), logger)
	default:
		source = "dns"
		instancer = dnssrv.NewInstancer(target.srvName, cfg.DNSRefresh, dnssrv.NewResolver(cfg.DNSServer),
			dm.errors.WithLabelValues(source), logger)
	}
	followed := instancer
	if cfg.EmptyGrace > 0 {
		followed = instance.NewGraced(instancer, cfg.EmptyGrace, dm.emptyHeld.WithLabelValues(source),
			log.With(logger, "source", source))
	}
	stopObserving := observeInstancer(followed, source, dm, logger)
	endpointer := sd.NewEndpointer(followed, factory, logger)
	return func() {
		endpointer.Close()
		stopObserving()
		if followed != instancer {
			followed.Stop()
		}
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

// discoveryMetrics are the collectors of registration and discovery,
// registered on run's registry beside the others.
type discoveryMetrics struct {
	instances     *prometheus.GaugeVec
	errors        *prometheus.CounterVec
	stale         *prometheus.GaugeVec
	registrations prometheus.Counter
	registered    prometheus.Gauge
	emptyHeld     *prometheus.CounterVec
}

func newDiscoveryMetrics(reg prometheus.Registerer) *discoveryMetrics {
	m := &discoveryMetrics{
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stringsvc_discovery_instances",
			Help: "Instances the registry (source etcd, consul, zk or dns) last reported to this proxy.",
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
			Help: "Times this instance registered itself (again after a lost lease, session or registration included).",
		}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stringsvc_registered",
			Help: "1 while this instance is registered.",
		}),
	}
	m.emptyHeld = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stringsvc_discovery_empty_held_total",
		Help: "Registry updates that would have removed every instance, held for -registry.empty-grace, by source.",
	}, []string{"source"})
	reg.MustRegister(m.instances, m.errors, m.stale, m.registrations, m.registered, m.emptyHeld)
	return m
}

// registrar returns the metrics a registrar of kind reports.
func (dm *discoveryMetrics) registrar(kind string) instance.RegistrarMetrics {
	return instance.RegistrarMetrics{
		Registrations: dm.registrations,
		Registered:    dm.registered,
		Errors:        dm.errors.WithLabelValues(kind),
	}
}

// addRegistrar adds to g an actor that registers this instance in etcd,
// keeps it registered while the group runs, and deregisters it when the
// group stops. Add it before the HTTP server: run.Group interrupts actors in
// the order they were added, so the instance leaves the registry, and
// proxies stop sending it new work, before the server stops accepting.
//
// advertise is the host:port proxies call, over scheme: "" for HTTP, or
// "grpc".
func addRegistrar(g *group.Group, cfg discoveryConfig, advertise, scheme string, dm *discoveryMetrics,
	logger log.Logger) error {
	registry := cfg.Registry.String()
	r, closeClient, err := newRegistrar(cfg, advertise, scheme, dm.registrar(cfg.Registry.kind),
		log.With(logger, "component", "registrar", "registry", registry))
	if err != nil {
		return fmt.Errorf("-registry: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.Add(func() error {
		defer close(done)
		defer closeClient()
		if err := r.Run(ctx, cfg.RegistryTimeout); err != nil {
			return fmt.Errorf("-registry %s: %w", registry, err)
		}
		return nil
	}, func(error) {
		cancel()
		<-done // deregistered
	})
	return nil
}

// registrar is what every registry's registrar does: register, keep the
// registration while ctx lasts, then deregister.
type registrar interface {
	Run(ctx context.Context, firstTimeout time.Duration) error
}

// newRegistrar returns the registrar of cfg.Registry for this instance at
// advertise, and a function that closes its client.
func newRegistrar(cfg discoveryConfig, advertise, scheme string, m instance.RegistrarMetrics,
	logger log.Logger) (registrar, func(), error) {
	switch cfg.Registry.kind {
	case "consul":
		client, err := consul.NewClient(cfg.Registry.endpoints[0], cfg.RegistryToken)
		if err != nil {
			return nil, nil, err
		}
		check := consul.Check{Interval: cfg.CheckInterval, Timeout: cfg.CheckTimeout,
			DeregisterCriticalServiceAfter: cfg.DeregisterAfter}
		if scheme == "grpc" { // the agent asks grpc.health.v1.Health, which follows /readyz
			check.GRPC = advertise
		}
		r, err := consul.NewRegistrar(client, consul.Service{
			Name: cfg.ServiceName, Addr: advertise, Tags: cfg.RegistryTags, Scheme: scheme, Check: check,
		}, m, logger)
		return r, client.Close, err
	case "zk":
		client, err := zk.NewClient(cfg.Registry.endpoints, cfg.ZKSession, logger)
		if err != nil {
			return nil, nil, err
		}
		r, err := zk.NewRegistrar(client, zk.Service{Name: cfg.ServiceName, Addr: advertise, Scheme: scheme},
			cfg.RegistryResync, m, logger)
		if err != nil {
			client.Close()
			return nil, nil, err
		}
		return r, client.Close, nil
	default: // "etcd"
		client, err := etcd.NewClient(cfg.Registry.endpoints)
		if err != nil {
			return nil, nil, err
		}
		value := advertise
		if scheme != "" {
			value = scheme + "://" + advertise
		}
		r := etcd.NewRegistrar(client, etcd.ServicePrefix(cfg.ServiceName)+advertise, value,
			cfg.RegistryTTL, m, logger)
		return r, func() { etcd.Close(client, logger) }, nil
	}
}
