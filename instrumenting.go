package main

import (
	"context"
	"strconv"
	"stringsvc/internal/lb"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics holds every collector the program exports, registered on the
// registry run creates (never the global one, so run can be called twice).
// The middlewares resolve label values once, when they are built, so a
// request costs no label lookup.
type metrics struct {
	requests          *prometheus.CounterVec
	requestErrors     *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	countResult       prometheus.Histogram
	upstream          *prometheus.CounterVec
	retries           prometheus.Counter
	retriesRefused    prometheus.Counter
	hedges, hedgesWon prometheus.Counter
	limited           *prometheus.CounterVec
	breakerState      *prometheus.GaugeVec
	instances         prometheus.Gauge
	scores            *scoreCollector
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stringsvc_requests_total",
			Help: "Requests served, by method and whether they returned an error.",
		}, []string{"method", "error"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stringsvc_request_errors_total",
			Help: "Requests that returned an error, by method and the HTTP status the error maps to (errorStatus): " +
				"400 empty string, 499 client went away, 502, 503 and 504 upstream failures.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stringsvc_request_duration_seconds",
			Help:    "Time to serve a request, in seconds, by method and whether it returned an error.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "error"}),
		countResult: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stringsvc_count_result",
			Help:    "The value each count method call returned, in code points.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stringsvc_upstream_requests_total",
			Help: "Proxied attempts per upstream instance, by outcome: success, business_error, error, timeout, canceled, breaker_open.",
		}, []string{"upstream", "outcome"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stringsvc_upstream_retries_total",
			Help: "Proxied attempts made after a failed one.",
		}),
		retriesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stringsvc_upstream_retries_refused_total",
			Help: "Retries the retry budget refused (the request ended with the last error).",
		}),
		hedges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stringsvc_upstream_hedges_total",
			Help: "Hedged attempts sent: a second attempt to another instance when the first had not answered after -proxy.hedge-after.",
		}),
		hedgesWon: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stringsvc_upstream_hedges_won_total",
			Help: "Hedged attempts whose answer was used.",
		}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stringsvc_upstream_limited_total",
			Help: "Proxied calls an instance's rate limiter refused (they moved on to another instance).",
		}, []string{"upstream"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stringsvc_upstream_breaker_state",
			Help: "Circuit breaker state per instance: 0 closed, 1 half-open, 2 open.",
		}, []string{"upstream"}),
		instances: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stringsvc_upstream_instances",
			Help: "Instances the proxy currently knows.",
		}),
	}
	m.scores = &scoreCollector{desc: prometheus.NewDesc("stringsvc_upstream_latency_ewma_seconds",
		"Per-instance decayed peak-EWMA latency the p2c balancer scores instances by (times in-flight + 1).",
		[]string{"upstream"}, nil)}
	reg.MustRegister(
		m.requests, m.requestErrors, m.duration, m.countResult,
		m.upstream, m.retries, m.retriesRefused, m.hedges, m.hedgesWon, m.limited, m.breakerState, m.instances,
		m.scores,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// requestObserver counts and times the calls of one method with one
// error-label value.
type requestObserver struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

func (m *metrics) requestObserver(method string, failed bool) requestObserver {
	failedLabel := strconv.FormatBool(failed)
	return requestObserver{
		count:    m.requests.WithLabelValues(method, failedLabel),
		duration: m.duration.WithLabelValues(method, failedLabel),
	}
}

func (o requestObserver) observe(begin time.Time) {
	o.count.Inc()
	o.duration.Observe(time.Since(begin).Seconds())
}

// errorCounter counts one method's errors by the HTTP status they map to.
// The statuses a service error can map to have their series from the
// start, so a ratio of them is 0, not missing, before the first error.
type errorCounter struct {
	byCode map[int]prometheus.Counter
	vec    *prometheus.CounterVec // curried with the method, for any other code
}

func (m *metrics) errorCounter(method string) errorCounter {
	c := errorCounter{byCode: make(map[int]prometheus.Counter),
		vec: m.requestErrors.MustCurryWith(prometheus.Labels{"method": method})}
	for _, code := range []int{400, statusClientClosedRequest, 500, 502, 503, 504} {
		c.byCode[code] = c.vec.WithLabelValues(strconv.Itoa(code))
	}
	return c
}

func (c errorCounter) inc(err error) {
	code := errorStatus(err)
	counter, ok := c.byCode[code]
	if !ok {
		counter = c.vec.WithLabelValues(strconv.Itoa(code))
	}
	counter.Inc()
}

// instrumentingMiddleware records request count and latency per method and
// error, errors by the status they map to, and the distribution of Count's
// results.
type instrumentingMiddleware struct {
	uppercaseOK, uppercaseFailed requestObserver
	uppercaseErrors              errorCounter
	count                        requestObserver
	countResult                  prometheus.Observer
	next                         StringService
}

func newInstrumentingMiddleware(m *metrics) ServiceMiddleware {
	return func(next StringService) StringService {
		return instrumentingMiddleware{
			uppercaseOK:     m.requestObserver("uppercase", false),
			uppercaseFailed: m.requestObserver("uppercase", true),
			uppercaseErrors: m.errorCounter("uppercase"),
			count:           m.requestObserver("count", false),
			countResult:     m.countResult,
			next:            next,
		}
	}
}

func (mw instrumentingMiddleware) Uppercase(ctx context.Context, s string) (output string, err error) {
	defer func(begin time.Time) {
		if err != nil {
			mw.uppercaseFailed.observe(begin)
			mw.uppercaseErrors.inc(err)
			return
		}
		mw.uppercaseOK.observe(begin)
	}(time.Now())
	return mw.next.Uppercase(ctx, s)
}

func (mw instrumentingMiddleware) Count(ctx context.Context, s string) (n int) {
	defer func(begin time.Time) {
		mw.count.observe(begin)
		mw.countResult.Observe(float64(n))
	}(time.Now())
	return mw.next.Count(ctx, s)
}

// scoreCollector reports each known instance's latency average at scrape
// time, so that a request pays nothing for the gauge.
type scoreCollector struct {
	desc *prometheus.Desc
	src  atomic.Pointer[lb.Endpointer] // nil until a proxy is built
}

func (c *scoreCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *scoreCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	now := time.Now()
	for _, in := range (*src).Instances() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, in.EWMA(now).Seconds(), in.Name)
	}
}
