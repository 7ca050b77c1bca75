// Package lb picks an upstream instance for each call and retries a failed
// call on another: go-kit's sd/lb (balancers beside the retry loop) with
// its own notion of an instance, so that a balancer knows which instance it
// picked. It knows go-kit's endpoint, the circuit breaker (its refusals and
// whether it is open) and the rate limiter's refusals, and nothing of the
// service or its transports.
package lb

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"
)

// Endpointer yields the instances a Balancer picks from. Instances must be
// cheap: it is called on every pick.
type Endpointer interface {
	Instances() []*Instance
}

// Balancer picks the instance for one call.
type Balancer interface {
	Pick() (*Instance, error)
}

// ErrNoEndpoints is returned by a Balancer whose Endpointer has no
// instances. Its text is go-kit's lb.ErrNoEndpoints'.
var ErrNoEndpoints = errors.New("no endpoints available")

// NewRoundRobin returns a Balancer that picks src's instances in turn.
func NewRoundRobin(src Endpointer) Balancer { return &roundRobin{src: src} }

type roundRobin struct {
	src  Endpointer
	next atomic.Uint64
}

func (rr *roundRobin) Pick() (*Instance, error) {
	instances := rr.src.Instances()
	if len(instances) == 0 {
		return nil, ErrNoEndpoints
	}
	return instances[(rr.next.Add(1)-1)%uint64(len(instances))], nil
}

// NewRandom returns a Balancer that picks one of src's instances uniformly
// at random.
func NewRandom(src Endpointer) Balancer { return random{src: src} }

type random struct{ src Endpointer }

func (r random) Pick() (*Instance, error) {
	instances := r.src.Instances()
	if len(instances) == 0 {
		return nil, ErrNoEndpoints
	}
	return instances[rand.IntN(len(instances))], nil
}
