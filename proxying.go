package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/circuitbreaker"
	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/ratelimit"
	grpctransport "github.com/go-kit/kit/transport/grpc"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"stringsvc/internal/h1"
	"stringsvc/internal/jsonfield"
	"stringsvc/internal/lb"
	"stringsvc/internal/tracing"
	"stringsvc/pb"
)

// proxyingMiddleware sends Uppercase to other instances and serves Count
// itself.
type proxyingMiddleware struct {
	uppercase endpoint.Endpoint
	next      StringService
}

// newProxy builds the proxying middleware, top down: the upstreams (one
// endpoint per instance, each behind its limiter and breaker), the source
// of instances -proxy names (discovery.go), then the balancer and retry
// loop over them. It returns the middleware, the readiness check (some
// instance can take traffic) and a function that stops following the
// registry.
func newProxy(cfg config, m *metrics, dm *discoveryMetrics, logger log.Logger) (
	proxying ServiceMiddleware, ready func() bool, stop func(), err error) {
	ups := newUpstreams(cfg.proxyConfig, m)
	var src lb.Endpointer = ups
	m.scores.src.Store(&src)
	stop, err = followInstances(cfg.target, cfg.discoveryConfig, ups.Factory, dm, logger)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-proxy: %w", err)
	}
	logger.Log("msg", "proxying /uppercase", "to", cfg.proxy, "balancer", cfg.Balancer)
	return newProxyingMiddleware(ups, cfg.proxyConfig, m), ups.Ready, stop, nil
}

// newProxyingMiddleware returns a middleware that forwards Uppercase to the
// instances src yields, through cfg's balancer and retry policy. Each
// instance's endpoint already carries its breaker and limiter
// (upstreams.Factory), so the same code serves a fixed list and a
// registry.
func newProxyingMiddleware(src lb.Endpointer, cfg proxyConfig, m *metrics) ServiceMiddleware {
	var balancer lb.Balancer
	switch cfg.Balancer {
	case "random":
		balancer = lb.NewRandom(src)
	case "p2c":
		balancer = lb.NewP2C(src)
	default: // "roundrobin"; parseConfig allows no other
		balancer = lb.NewRoundRobin(src)
	}
	policy := lb.Policy{
		Op:             "proxy uppercase",
		Attempts:       cfg.Attempts,
		AttemptTimeout: cfg.AttemptTimeout,
		Timeout:        cfg.Timeout,
		Backoff:        cfg.RetryBackoff,
		Budget:         lb.NewBudget(cfg.RetryBudget, cfg.RetryBudgetMin),
		// Uppercase has no side effects, so an attempt may be sent twice.
		// A method that is not idempotent must not be hedged.
		HedgeAfter:  cfg.HedgeAfter,
		HedgeBudget: lb.NewBudget(cfg.HedgeBudget, 0),
		Metrics: lb.Metrics{
			Retries: m.retries, RetriesRefused: m.retriesRefused, Hedges: m.hedges, HedgesWon: m.hedgesWon,
		},
	}
	if cfg.Tracer != nil {
		policy.Observe = tracing.ObserveAttempts(cfg.Tracer)
	}
	uppercase := lb.Retry(src, balancer, policy)
	return func(next StringService) StringService {
		return proxyingMiddleware{uppercase: uppercase, next: next}
	}
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

// upstreams creates one endpoint per instance, each behind its own breaker
// and limiter, and keeps the live ones for the balancer, readiness and
// metrics. Its Factory is an sd.Factory: a fixed list and a registry both
// go through it, and the registry's endpointer closes what goes away.
type upstreams struct {
	cfg     proxyConfig
	metrics *metrics

	mu        sync.Mutex
	instances map[string]*upstream
	// live is the instances sorted by name, rebuilt on every change and
	// read without the lock on every pick.
	live atomic.Pointer[[]*lb.Instance]
}

// upstream is one instance the proxy forwards to.
type upstream struct {
	instance *lb.Instance
	breaker  *gobreaker.CircuitBreaker
}

func newUpstreams(cfg proxyConfig, m *metrics) *upstreams {
	u := &upstreams{cfg: cfg, metrics: m, instances: make(map[string]*upstream)}
	u.live.Store(new([]*lb.Instance))
	return u
}

// Instances implements lb.Endpointer.
func (u *upstreams) Instances() []*lb.Instance { return *u.live.Load() }

// Factory implements sd.Factory: instance → open-breaker check → limiter →
// breaker → call. The limiter is outside the breaker, so a refusal for
// rate is not a failure of the instance; the check before it keeps an open
// breaker from spending the limiter's tokens (lb.RefuseWhileOpen). Closing
// the returned io.Closer forgets the instance and its metrics.
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
	limiter := rate.NewLimiter(limit, u.cfg.Burst)
	e, closeClient, err := newUppercaseProxy(target, u.cfg.MaxIdleConnsPerHost)
	if err != nil {
		return nil, nil, err
	}
	e = circuitbreaker.Gobreaker(breaker)(e)
	e = ratelimit.NewErroringLimiter(limiter)(e)
	e = lb.RefuseWhileOpen(breaker)(e)
	e = u.observeOutcomes(instance)(e)
	if u.cfg.Tracer != nil {
		e = tracing.Calls(target, grpcServiceName+"/Uppercase", outcomeName)(e)
	}

	up := &upstream{instance: &lb.Instance{Name: instance, Endpoint: e, Available: func() bool {
		return breaker.State() != gobreaker.StateOpen && (limit == rate.Inf || limiter.Tokens() >= 1)
	}}, breaker: breaker}
	u.mu.Lock()
	u.instances[instance] = up
	u.changed()
	u.mu.Unlock()
	return e, closerFunc(func() error {
		u.forget(up)
		return closeClient()
	}), nil
}

// changed publishes the instances after a change; u.mu is held.
func (u *upstreams) changed() {
	live := make([]*lb.Instance, 0, len(u.instances))
	for _, up := range u.instances {
		live = append(live, up.instance)
	}
	slices.SortFunc(live, func(a, b *lb.Instance) int { return strings.Compare(a.Name, b.Name) })
	u.live.Store(&live)
	u.metrics.instances.Set(float64(len(live)))
}

func (u *upstreams) forget(up *upstream) {
	name := up.instance.Name
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.instances[name] != up {
		return // replaced by a newer endpoint for the same instance
	}
	delete(u.instances, name)
	u.changed()
	u.metrics.breakerState.DeleteLabelValues(name)
	u.metrics.limited.DeleteLabelValues(name)
	u.metrics.upstream.DeletePartialMatch(prometheus.Labels{"upstream": name})
}

// Ready reports whether some instance can take traffic: at least one is
// known and its breaker is not open.
func (u *upstreams) Ready() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.instances {
		if up.breaker.State() != gobreaker.StateOpen {
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
	var counters [outcomeLimited + 1]prometheus.Counter
	for o := range outcomeLimited {
		counters[o] = u.metrics.upstream.WithLabelValues(instance, o.String())
	}
	counters[outcomeLimited] = u.metrics.limited.WithLabelValues(instance)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			response, err := next(ctx, request)
			counters[outcomeOf(response, err)].Inc()
			return response, err
		}
	}
}

// outcome is what became of one call of an instance: the outcome label of
// stringsvc_upstream_requests_total, or a refusal by the instance's
// limiter, counted apart.
type outcome int

const (
	outcomeSuccess outcome = iota
	outcomeBusinessError
	outcomeError
	outcomeTimeout
	outcomeCanceled
	outcomeBreakerOpen
	outcomeLimited // last: not an outcome label
)

var outcomeNames = [...]string{
	"success", "business_error", "error", "timeout", "canceled", "breaker_open", "limited",
}

func (o outcome) String() string { return outcomeNames[o] }

func outcomeOf(response any, err error) outcome {
	switch {
	case err == nil && response.(uppercaseResponse).err == nil:
		return outcomeSuccess
	case err == nil:
		return outcomeBusinessError
	case errors.Is(err, ratelimit.ErrLimited):
		return outcomeLimited
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return outcomeBreakerOpen
	case errors.Is(err, context.DeadlineExceeded):
		return outcomeTimeout
	case errors.Is(err, context.Canceled):
		return outcomeCanceled
	}
	return outcomeError
}

// outcomeName is outcomeOf's name, for the attempt's span.
func outcomeName(response any, err error) string { return outcomeOf(response, err).String() }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// newUppercaseProxy returns the endpoint that calls Uppercase on the
// instance at target, over HTTP or gRPC by its scheme, and a function that
// closes its connections.
func newUppercaseProxy(target *url.URL, maxIdleConns int) (endpoint.Endpoint, func() error, error) {
	if target.Scheme == "grpc" {
		conn, err := dialGRPCInstance(target.Host)
		if err != nil {
			return nil, nil, err
		}
		return makeUppercaseGRPCProxy(conn), conn.Close, nil
	}
	client := h1.NewClient(target, "application/json", maxIdleConns)
	return makeUppercaseProxy(client), func() error { client.CloseIdle(); return nil }, nil
}

// makeUppercaseProxy returns an endpoint that POSTs an uppercaseRequest to
// one instance through client, with the attempt's remaining time in
// timeoutHeader, so that the instance stops working when the proxy stops
// waiting, and the attempt's span context in traceparent when it has one
// (with tracing off, ctx has none, and nothing is written). Transport
// failures, 5xx and 429 come back as errors (retried, counted by the
// breaker); an answer the instance gave on purpose comes
// back inside the response, neither retried nor a breaker failure: ErrEmpty
// (our 400 or stringsvc3's 200 {"err":"empty string"}) reaches the client
// as 400, any other 4xx as 502.
func makeUppercaseProxy(client *h1.Client) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(uppercaseRequest)
		buf := byteBuffers.Get().(*[]byte)
		defer byteBuffers.Put(buf)
		b := (*buf)[:0]
		if deadline, ok := ctx.Deadline(); ok {
			b = appendTimeoutHeader(b, time.Until(deadline))
		}
		sc := trace.SpanContextFromContext(ctx)
		if sc.IsValid() {
			b = tracing.AppendTraceContext(b, sc)
		}
		headerLen := len(b)
		b = append(b, `{"s":`...)
		b = append(jsonfield.AppendString(b, req.S), '}')
		*buf = b
		var response any
		answered := 0
		err := client.Post(ctx, b[:headerLen], b[headerLen:], func(status int, answer []byte) error {
			var err error
			answered = status
			response, err = decodeUppercaseResponse(status, answer)
			return err
		})
		if sc.IsValid() && answered != 0 {
			trace.SpanFromContext(ctx).SetAttributes(semconv.HTTPResponseStatusCode(answered))
		}
		return response, err
	}
}

// makeUppercaseGRPCProxy returns an endpoint that calls Uppercase on the
// instance behind conn; the request's remaining deadline travels with it
// (grpc-timeout), and its span context, if it has one (traceparent). As
// makeUppercaseProxy does for HTTP, an answer the instance gave on
// purpose, INVALID_ARGUMENT, comes back inside the response, neither
// retried nor a breaker failure: ErrEmpty for "empty string", errUpstream
// for anything else. Every other code is an error, a context error where
// the call ran out of time or was canceled.
func makeUppercaseGRPCProxy(conn *grpc.ClientConn) endpoint.Endpoint {
	call := grpctransport.NewClient(conn, grpcServiceName, "Uppercase",
		encodeGRPCUppercaseRequest, decodeGRPCUppercaseResponse, &pb.UppercaseResponse{},
		grpctransport.ClientBefore(tracing.InjectGRPC)).Endpoint()
	return func(ctx context.Context, request any) (any, error) {
		response, err := call(ctx, request)
		tracing.RecordGRPCStatus(ctx, err)
		if err != nil {
			return decodeGRPCUpstreamError(ctx, err)
		}
		return response, nil
	}
}
