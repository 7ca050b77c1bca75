package instance

import (
	"sync"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
)

// Graced is an sd.Instancer that passes on src's events, except one that
// would remove every instance at once: that one is passed on only after it
// has held for the grace period. A registry that has just restarted empty
// (a Consul agent in -dev mode, an etcd restored without data) reports no
// instances until they register again, typically within a second or two;
// without the grace a proxy would drop every instance and fail every
// request meanwhile. An event that leaves at least one instance, and an
// error (on which go-kit's endpointer keeps the last set), pass at once.
type Graced struct {
	src    sd.Instancer
	grace  time.Duration
	held   prometheus.Counter
	logger log.Logger
	cache  Cache
	events chan sd.Event
	done   chan struct{}

	mu    sync.Mutex
	known int         // instances last passed on
	timer *time.Timer // running while an empty set is held
}

// NewGraced follows src, holding an all-instances-gone event for grace;
// each one held is counted in held and logged.
func NewGraced(src sd.Instancer, grace time.Duration, held prometheus.Counter, logger log.Logger) *Graced {
	g := &Graced{src: src, grace: grace, held: held, logger: logger,
		events: make(chan sd.Event), done: make(chan struct{})}
	go g.loop()
	src.Register(g.events)
	return g
}

func (g *Graced) loop() {
	defer close(g.done)
	for ev := range g.events {
		g.mu.Lock()
		switch {
		case ev.Err != nil: // the endpointer keeps the last set by itself
			g.cache.Update(ev)
		case len(ev.Instances) > 0:
			if g.timer != nil {
				g.timer.Stop() // the registry is back before the grace ran out
				g.timer = nil
			}
			g.known = len(ev.Instances)
			g.cache.Update(ev)
		case g.known == 0: // nothing to lose
			g.cache.Update(ev)
		case g.timer == nil:
			g.held.Inc()
			g.logger.Log("msg", "registry reports no instances; keeping the last set for the grace period",
				"instances", g.known, "grace", g.grace)
			g.timer = time.AfterFunc(g.grace, g.dropAll)
		}
		g.mu.Unlock()
	}
}

// dropAll passes on the empty set once it has held for the grace period.
func (g *Graced) dropAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timer == nil {
		return // stopped: instances came back
	}
	g.timer, g.known = nil, 0
	g.logger.Log("msg", "registry still reports no instances after the grace period; dropping them")
	g.cache.Update(sd.Event{Instances: []string{}})
}

// Register implements sd.Instancer.
func (g *Graced) Register(ch chan<- sd.Event) { g.cache.Register(ch) }

// Deregister implements sd.Instancer.
func (g *Graced) Deregister(ch chan<- sd.Event) { g.cache.Deregister(ch) }

// Stop implements sd.Instancer: it stops following src (it does not stop
// src itself).
func (g *Graced) Stop() {
	g.src.Deregister(g.events)
	close(g.events)
	<-g.done
	g.mu.Lock()
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.mu.Unlock()
}
