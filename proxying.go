package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/go-kit/kit/circuitbreaker"
	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/ratelimit"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"
	"golang.org/x/time/rate"

	"stringsvc/internal/h1"
	"stringsvc/internal/jsonfield"
)

// proxyConfig tunes the proxying middleware. run fills it from flags; every
// field has a documented default there.
type proxyConfig struct {
	Balancer       string        // "roundrobin" or "random"
	Attempts       int           // attempts per request, at least 1
	AttemptTimeout time.Duration // bound of one attempt
	Timeout        time.Duration // bound of all attempts together

	QPS   float64 // sustained requests/s per instance; 0 means no limit
	Burst int     // requests per instance allowed at once above QPS

	BreakerFailures    uint32        // consecutive failures that open a breaker
	BreakerRatio       float64       // failure ratio that opens a breaker...
	BreakerMinRequests uint32        // ...once an interval has seen this many requests
	BreakerInterval    time.Duration // closed-state window for the counts; 0 never clears them
	BreakerCooldown    time.Duration // open time before a probe

	MaxIdleConnsPerHost int // kept-alive connections per instance
}

// proxyingMiddleware sends Uppercase to other instances and serves Count
// itself.
type proxyingMiddleware struct {
	uppercase endpoint.Endpoint
	next      StringService
}

// newProxyingMiddleware returns a middleware that forwards Uppercase to the
// instances endpointer yields, through cfg's balancer and retry policy.
// Each endpoint already carries its instance's breaker and limiter (see
// upstreams.Factory), so the same code serves a fixed list and a registry.
func newProxyingMiddleware(endpointer sd.Endpointer, cfg proxyConfig, m *metrics) (ServiceMiddleware, error) {
	var balancer lb.Balancer
	switch cfg.Balancer {
	case "roundrobin":
		balancer = lb.NewRoundRobin(endpointer)
	case "random":
		balancer = lb.NewRandom(endpointer, time.Now().UnixNano())
	default:
		return nil, fmt.Errorf("unknown balancer %q (want roundrobin or random)", cfg.Balancer)
	}
	uppercase := retry(endpointer, balancer, cfg, m.retries)
	return func(next StringService) StringService {
		return proxyingMiddleware{uppercase: uppercase, next: next}
	}, nil
}

func (mw proxyingMiddleware) Uppercase(ctx context.Context, s string) (string, error) {
	response, err := mw.uppercase(ctx, uppercaseRequest{S: s})
	if err != nil {
		return "", err
	}
	resp := response.(uppercaseResponse)
	return resp.V, resp.err
}

func (mw proxyingMiddleware) Count(ctx context.Context, s string) int {
	return mw.next.Count(ctx, s)
}

// retry calls the balancer's picks until one answers. It is go-kit's
// lb.Retry reshaped, because lb.Retry shares one timeout across all
// attempts (one hung instance eats the whole budget), returns a bare
// context error when it runs out, and spends an attempt on an instance
// whose breaker is open or whose limiter is empty. Here:
//   - each attempt has its own timeout, inside the overall one, inside the
//     request's context;
//   - an instance that refuses at once (breaker open, limiter empty) is
//     skipped without spending an attempt, up to twice the instance count;
//   - business errors never reach this loop as errors: they ride inside the
//     response, so they are neither retried nor counted by a breaker.
func retry(endpointer sd.Endpointer, balancer lb.Balancer, cfg proxyConfig, retries prometheus.Counter) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		// One context per attempt, whose deadline is the sooner of the
		// attempt's and the request's: a second timer for the whole
		// request would cost as much again.
		deadline := time.Now().Add(cfg.Timeout)
		var (
			attempts, skips, maxSkips int
			lastErr, lastRefusal      error
		)
		for {
			e, err := balancer.Endpoint()
			if err != nil {
				return nil, err
			}
			attemptCtx, attemptCancel := context.WithDeadline(ctx, earliest(time.Now().Add(cfg.AttemptTimeout), deadline))
			response, err := e(attemptCtx, request)
			attemptCancel()
			switch {
			case err == nil:
				return response, nil
			case ctx.Err() != nil:
				return nil, fmt.Errorf("proxy uppercase after %d attempts: %w", attempts+1, ctx.Err())
			case !time.Now().Before(deadline):
				return nil, fmt.Errorf("proxy uppercase after %d attempts: %w", attempts+1, context.DeadlineExceeded)
			case refusedAtOnce(err):
				if maxSkips == 0 {
					endpoints, _ := endpointer.Endpoints() // the balancer already returned its error
					maxSkips = 2 * len(endpoints)
				}
				skips++
				lastRefusal = err
				if skips < maxSkips {
					continue
				}
			default:
				attempts++
				lastErr = err
				if attempts < cfg.Attempts {
					retries.Inc()
					continue
				}
			}
			if lastErr == nil {
				return nil, fmt.Errorf("%w: %w", errUnavailable, lastRefusal)
			}
			return nil, fmt.Errorf("%w after %d attempts: %w", errUpstream, attempts, lastErr)
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// refusedAtOnce reports whether an instance declined a call without trying
// it: its breaker is open (or half-open and busy) or its limiter is empty.
func refusedAtOnce(err error) bool {
	return errors.Is(err, ratelimit.ErrLimited) ||
		errors.Is(err, gobreaker.ErrOpenState) ||
		errors.Is(err, gobreaker.ErrTooManyRequests)
}

// upstreams creates one endpoint per instance, each behind its own breaker
// and limiter, and keeps track of them for readiness and metrics. Its
// Factory is an sd.Factory: a fixed list and a registry both go through it.
type upstreams struct {
	cfg     proxyConfig
	metrics *metrics

	mu        sync.Mutex
	instances map[string]*gobreaker.CircuitBreaker
}

func newUpstreams(cfg proxyConfig, m *metrics) *upstreams {
	return &upstreams{
		cfg:       cfg,
		metrics:   m,
		instances: make(map[string]*gobreaker.CircuitBreaker),
	}
}

// fixedEndpointer builds the endpoints of a fixed instance list.
func (u *upstreams) fixedEndpointer(instances []string) (sd.FixedEndpointer, error) {
	endpoints := make(sd.FixedEndpointer, 0, len(instances))
	for _, instance := range instances {
		e, _, err := u.Factory(instance)
		if err != nil {
			return nil, err
		}
		endpoints = append(endpoints, e)
	}
	return endpoints, nil
}

// Factory implements sd.Factory: instance → limiter → breaker → HTTP call.
// The limiter is outside the breaker, so a refusal for rate is not a
// failure of the instance. Closing the returned io.Closer forgets the
// instance and its metrics.
func (u *upstreams) Factory(instance string) (endpoint.Endpoint, io.Closer, error) {
	target, err := parseInstance(instance)
	if err != nil {
		return nil, nil, err
	}
	breaker := u.newBreaker(instance)
	limit := rate.Limit(u.cfg.QPS)
	if u.cfg.QPS <= 0 {
		limit = rate.Inf
	}
	client := h1.NewClient(target, "application/json", u.cfg.MaxIdleConnsPerHost)
	e := makeUppercaseProxy(client)
	e = circuitbreaker.Gobreaker(breaker)(e)
	e = ratelimit.NewErroringLimiter(rate.NewLimiter(limit, u.cfg.Burst))(e)
	e = u.observeOutcomes(instance)(e)

	u.mu.Lock()
	u.instances[instance] = breaker
	u.metrics.instances.Set(float64(len(u.instances)))
	u.mu.Unlock()
	return e, closerFunc(func() error {
		u.forget(instance, breaker)
		client.CloseIdle()
		return nil
	}), nil
}

func (u *upstreams) forget(instance string, breaker *gobreaker.CircuitBreaker) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.instances[instance] != breaker {
		return // replaced by a newer endpoint for the same instance
	}
	delete(u.instances, instance)
	u.metrics.instances.Set(float64(len(u.instances)))
	u.metrics.breakerState.DeleteLabelValues(instance)
	u.metrics.limited.DeleteLabelValues(instance)
	u.metrics.upstream.DeletePartialMatch(prometheus.Labels{"instance": instance})
}

// Ready reports whether some instance can take traffic: at least one is
// known and its breaker is not open.
func (u *upstreams) Ready() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, b := range u.instances {
		if b.State() != gobreaker.StateOpen {
			return true
		}
	}
	return false
}

func (u *upstreams) newBreaker(instance string) *gobreaker.CircuitBreaker {
	state := u.metrics.breakerState.WithLabelValues(instance)
	state.Set(float64(gobreaker.StateClosed))
	cfg := u.cfg
	return gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        instance,
		MaxRequests: 1,
		Interval:    cfg.BreakerInterval,
		Timeout:     cfg.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= cfg.BreakerFailures ||
				(c.Requests >= cfg.BreakerMinRequests &&
					float64(c.TotalFailures) >= cfg.BreakerRatio*float64(c.Requests))
		},
		OnStateChange: func(_ string, _, to gobreaker.State) { state.Set(float64(to)) },
		// A client that went away says nothing about the instance.
		IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, context.Canceled) },
	})
}

// observeOutcomes counts each call of an instance's endpoint by outcome.
func (u *upstreams) observeOutcomes(instance string) endpoint.Middleware {
	outcome := func(name string) prometheus.Counter {
		return u.metrics.upstream.WithLabelValues(instance, name)
	}
	success, business, failure := outcome("success"), outcome("business_error"), outcome("error")
	timeout, canceled, open := outcome("timeout"), outcome("canceled"), outcome("breaker_open")
	limited := u.metrics.limited.WithLabelValues(instance)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			response, err := next(ctx, request)
			switch {
			case err == nil && response.(uppercaseResponse).err == nil:
				success.Inc()
			case err == nil:
				business.Inc()
			case errors.Is(err, ratelimit.ErrLimited):
				limited.Inc()
			case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
				open.Inc()
			case errors.Is(err, context.DeadlineExceeded):
				timeout.Inc()
			case errors.Is(err, context.Canceled):
				canceled.Inc()
			default:
				failure.Inc()
			}
			return response, err
		}
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// validateProxyConfig rejects settings that cannot work.
func validateProxyConfig(cfg proxyConfig) error {
	switch {
	case cfg.Attempts < 1:
		return fmt.Errorf("-proxy.attempts %d: want at least 1", cfg.Attempts)
	case cfg.AttemptTimeout <= 0 || cfg.Timeout <= 0:
		return errors.New("-proxy.attempt-timeout and -proxy.timeout must be positive")
	case cfg.QPS < 0 || math.IsNaN(cfg.QPS) || math.IsInf(cfg.QPS, 0):
		return fmt.Errorf("-proxy.qps %v: want a number >= 0", cfg.QPS)
	case cfg.QPS > 0 && cfg.Burst < 1:
		return fmt.Errorf("-proxy.burst %d: want at least 1", cfg.Burst)
	case cfg.BreakerFailures < 1:
		return errors.New("-proxy.breaker.failures: want at least 1")
	case cfg.BreakerRatio <= 0 || cfg.BreakerRatio > 1:
		return fmt.Errorf("-proxy.breaker.ratio %v: want a number in (0, 1]", cfg.BreakerRatio)
	case cfg.BreakerCooldown <= 0:
		return errors.New("-proxy.breaker.cooldown must be positive")
	case cfg.MaxIdleConnsPerHost < 1:
		return errors.New("-proxy.max-idle-conns: want at least 1")
	}
	return nil
}

// makeUppercaseProxy returns an endpoint that POSTs an uppercaseRequest to
// one instance through client. Transport failures, 5xx and 429 come back as errors (retried,
// counted by the breaker); an answer the instance gave on purpose comes
// back inside the response, neither retried nor a breaker failure: ErrEmpty
// (our 400 or stringsvc3's 200 {"err":"empty string"}) reaches the client
// as 400, any other 4xx as 502.
func makeUppercaseProxy(client *h1.Client) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(uppercaseRequest)
		buf := byteBuffers.Get().(*[]byte)
		defer byteBuffers.Put(buf)
		body := append((*buf)[:0], `{"s":`...)
		body = append(jsonfield.AppendString(body, req.S), '}')
		*buf = body
		var response any
		err := client.Post(ctx, body, func(status int, answer []byte) error {
			var err error
			response, err = decodeUppercaseResponse(status, answer)
			return err
		})
		return response, err
	}
}

