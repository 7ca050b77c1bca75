package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-kit/log"

	"stringsvc/internal/sd/instance"
)

// Service is what a registrar registers with the agent.
type Service struct {
	Name string   // the service
	Addr string   // the advertised host:port: the instance's Address and Port
	Tags []string // nil: none
	// Scheme, if set, is how proxies call the instance ("grpc"): it is
	// registered as the service's Meta "scheme", and an Instancer lists the
	// instance as scheme://host:port. Empty: plain host:port (HTTP).
	Scheme string
	Check  Check
}

// Check is the health check the agent runs on the instance. Only instances
// that pass it are listed by an Instancer.
type Check struct {
	// HTTP is the URL the agent GETs: 2xx passes, 429 warns, anything
	// else fails. Empty, with GRPC empty too: http://<Addr>/readyz.
	HTTP string
	// GRPC is host:port[/service] for a gRPC health check instead; set at
	// most one of HTTP and GRPC.
	GRPC string
	// Interval is the time between checks; zero: 10s. The agent raises
	// anything under 1s to 1s. The registrar also checks this often that
	// the agent still has the service.
	Interval time.Duration
	// Timeout bounds one check; zero: the agent's default, 10s.
	Timeout time.Duration
	// DeregisterCriticalServiceAfter is how long the check may fail before
	// the agent removes the service, for an instance that died without
	// deregistering. Zero: 1 minute, which is also the agent's floor.
	DeregisterCriticalServiceAfter time.Duration
}

// Registrar keeps this instance registered with the local agent while the
// process runs.
//
// It replaces go-kit's sd/consul.Registrar, which registers once: an agent
// restarted without its data (a -dev agent, a rebuilt node) or a service
// deregistered by hand leaves the instance unlisted for good, and its
// Register cannot report a failure, so start-up could not fail on it. Here
// Run checks every check interval that the agent still has the service and
// registers it again if not, with backoff on failures, until it is stopped;
// then it deregisters it, so proxies drop the instance at once instead of
// after the check fails.
type Registrar struct {
	client   *Client
	reg      registration
	interval time.Duration
	metrics  instance.RegistrarMetrics
	logger   log.Logger
}

// NewRegistrar returns a registrar of svc. The service's ID is
// Name-Addr: unique per instance, and the same when an instance starts
// again on the same address, so that it replaces its old registration.
func NewRegistrar(client *Client, svc Service, metrics instance.RegistrarMetrics,
	logger log.Logger) (*Registrar, error) {
	host, portText, err := net.SplitHostPort(svc.Addr)
	if err != nil {
		return nil, fmt.Errorf("consul registrar: advertise address %q: %w", svc.Addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("consul registrar: advertise address %q has no valid port", svc.Addr)
	}
	c := svc.Check
	if c.HTTP != "" && c.GRPC != "" {
		return nil, errors.New("consul registrar: set one of Check.HTTP and Check.GRPC, not both")
	}
	if c.HTTP == "" && c.GRPC == "" {
		c.HTTP = "http://" + svc.Addr + "/readyz"
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.DeregisterCriticalServiceAfter <= 0 {
		c.DeregisterCriticalServiceAfter = time.Minute
	}
	check := &checkDefinition{
		HTTP:                           c.HTTP,
		GRPC:                           c.GRPC,
		Interval:                       c.Interval.String(),
		DeregisterCriticalServiceAfter: c.DeregisterCriticalServiceAfter.String(),
	}
	if c.Timeout > 0 {
		check.Timeout = c.Timeout.String()
	}
	id := svc.Name + "-" + svc.Addr
	return &Registrar{
		client: client,
		reg: registration{
			ID: id, Name: svc.Name, Tags: svc.Tags, Address: host, Port: port, Check: check,
			Meta: schemeMeta(svc.Scheme),
		},
		interval: c.Interval,
		metrics:  metrics,
		logger:   log.With(logger, "service_id", id),
	}, nil
}

// ID returns the service ID the registrar registers.
func (r *Registrar) ID() string { return r.reg.ID }

// Run registers the instance, giving up with an error if that does not
// succeed within firstTimeout, and keeps it registered until ctx is done;
// then it deregisters it and returns nil.
func (r *Registrar) Run(ctx context.Context, firstTimeout time.Duration) error {
	firstCtx, cancel := context.WithTimeout(ctx, firstTimeout)
	err := r.registerRetrying(firstCtx)
	cancel()
	switch {
	case ctx.Err() != nil:
		if err == nil {
			r.deregister()
		}
		return nil
	case err != nil:
		return fmt.Errorf("register with consul: no success within %v: %w", firstTimeout, err)
	}
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			r.deregister()
			return nil
		case <-ticker.C:
			r.keep(ctx)
		}
	}
}

// keep registers the service again if the agent no longer has it. If the
// agent cannot be asked, the next tick asks again.
func (r *Registrar) keep(ctx context.Context) {
	found, err := r.client.hasService(ctx, r.reg.ID)
	switch {
	case err != nil && ctx.Err() == nil:
		inc(r.metrics.Errors)
		r.logger.Log("msg", "ask the agent for the service", "err", err)
	case err == nil && !found:
		set(r.metrics.Registered, 0)
		r.logger.Log("msg", "the agent lost the service, registering again")
		r.registerRetrying(ctx) // fails only when ctx is done
	}
}

// registerRetrying registers until it succeeds or ctx is done, waiting
// longer after each failure.
func (r *Registrar) registerRetrying(ctx context.Context) error {
	var b instance.Backoff
	for {
		err := r.client.register(ctx, r.reg)
		if err == nil {
			inc(r.metrics.Registrations)
			set(r.metrics.Registered, 1)
			r.logger.Log("msg", "registered")
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		inc(r.metrics.Errors)
		wait := b.Wait()
		r.logger.Log("msg", "register failed, retrying", "in", wait, "err", err)
		if !sleep(ctx, wait) {
			return err
		}
	}
}

// deregister removes the service under a fresh deadline: the caller's
// context is done already. If the agent cannot be reached the service
// stays until its check has failed for DeregisterCriticalServiceAfter.
func (r *Registrar) deregister() {
	set(r.metrics.Registered, 0)
	if err := r.client.deregister(context.Background(), r.reg.ID); err != nil {
		inc(r.metrics.Errors)
		r.logger.Log("msg", "deregister failed; the agent removes the service once its check "+
			"has failed long enough", "err", err)
		return
	}
	r.logger.Log("msg", "deregistered")
}

// schemeMeta is the Meta of a registration whose instance is called over
// scheme; nil for plain HTTP.
func schemeMeta(scheme string) map[string]string {
	if scheme == "" {
		return nil
	}
	return map[string]string{"scheme": scheme}
}
