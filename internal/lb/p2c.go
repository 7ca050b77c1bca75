package lb

import (
	"math/rand/v2"
	"time"
)

// NewP2C returns the least-loaded Balancer of Finagle and Linkerd: of two
// different instances picked at random it takes the one with the lower
// score, its peak-EWMA latency times its in-flight calls plus one. A
// failed call counts as slow as a timeout (the retry loop measures it so),
// an instance that has not been measured yet scores as the average of
// those that have (a new instance does not win everything while it is
// idle), and an instance that refuses calls (Instance.Available) is picked
// only when no other would take the call.
func NewP2C(src Endpointer) Balancer { return p2c{src: src} }

type p2c struct{ src Endpointer }

func (b p2c) Pick() (*Instance, error) {
	instances := b.src.Instances()
	switch len(instances) {
	case 0:
		return nil, ErrNoEndpoints
	case 1:
		return instances[0], nil
	}
	i := rand.IntN(len(instances))
	j := rand.IntN(len(instances) - 1)
	if j >= i {
		j++
	}
	a, c := instances[i], instances[j]
	switch aOK, cOK := a.available(), c.available(); {
	case aOK && !cOK:
		return a, nil
	case cOK && !aOK:
		return c, nil
	case !aOK && !cOK:
		for _, in := range instances { // any that would take the call
			if in.available() {
				return in, nil
			}
		}
		return a, nil // none would; the retry loop skips the refusal
	}
	now := time.Now()
	neutral := neutralCost(instances, now)
	if c.score(neutral, now) < a.score(neutral, now) {
		return c, nil
	}
	return a, nil
}

// neutralCost is the average decayed latency of the measured instances,
// the score of one not measured yet.
func neutralCost(instances []*Instance, now time.Time) float64 {
	var sum float64
	n := 0
	for _, in := range instances {
		in.mu.Lock()
		if in.ewma != 0 {
			sum += in.decayed(now)
			n++
		}
		in.mu.Unlock()
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
