package lb

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
)

// Instance is one upstream a Balancer can pick: its name (an address, for
// logs and metrics), the endpoint that calls it, and the load the retry
// loop measures on it for the least-loaded balancer. An Instance must not
// be copied after first use.
type Instance struct {
	Name     string
	Endpoint endpoint.Endpoint
	// Available, if set, reports whether the instance would take a call
	// now: its breaker is not open and its limiter not empty. NewP2C never
	// picks an unavailable instance while another is available.
	Available func() bool

	inflight atomic.Int64
	mu       sync.Mutex
	ewma     float64   // peak-EWMA latency in seconds; 0 until measured
	stamp    time.Time // when ewma was last updated
}

// decay is the time constant of the latency average: a measurement's
// weight falls to 1/e after this long. Finagle and Linkerd use 10s.
const decay = 10 * time.Second

// minCost keeps a decayed or very fast instance's score above zero, so
// that its in-flight count still weighs.
const minCost = 10e-6

// EWMA returns the instance's decayed peak-EWMA latency as of now, zero
// until it has been measured.
func (in *Instance) EWMA(now time.Time) time.Duration {
	in.mu.Lock()
	defer in.mu.Unlock()
	return time.Duration(in.decayed(now) * float64(time.Second))
}

// decayed is ewma decayed to now; in.mu is held.
func (in *Instance) decayed(now time.Time) float64 {
	if in.ewma == 0 {
		return 0
	}
	elapsed := now.Sub(in.stamp)
	if elapsed <= 0 {
		return in.ewma
	}
	return in.ewma * math.Exp(-float64(elapsed)/float64(decay))
}

// observe records a call that took rtt: the average jumps to a slower
// measurement at once (peak) and moves toward a faster one by its decay.
func (in *Instance) observe(rtt time.Duration, now time.Time) {
	v := rtt.Seconds()
	in.mu.Lock()
	defer in.mu.Unlock()
	cur := in.decayed(now)
	if in.ewma == 0 || v > cur {
		in.ewma = v
	} else {
		w := math.Exp(-float64(now.Sub(in.stamp)) / float64(decay))
		in.ewma = cur*w + v*(1-w)
	}
	in.stamp = now
}

// score is the instance's load: its decayed latency, or neutral while it
// has not been measured, times its in-flight calls plus one.
func (in *Instance) score(neutral float64, now time.Time) float64 {
	in.mu.Lock()
	cost := in.decayed(now)
	measured := in.ewma != 0
	in.mu.Unlock()
	if !measured {
		cost = neutral
	}
	return max(cost, minCost) * float64(in.inflight.Load()+1)
}

// available reports whether in would take a call now.
func (in *Instance) available() bool { return in.Available == nil || in.Available() }
