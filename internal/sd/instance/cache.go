// Package instance holds what every instancer and registrar in internal/sd
// shares: the cache that keeps an instancer's latest event and hands it to
// each subscriber (go-kit's sd/internal/instance, which cannot be imported
// from outside go-kit), the metrics a registrar reports, the grace that
// holds an update removing every instance (Graced), and the backoff
// between failed registry calls. It knows go-kit's sd.Event and nothing of
// any registry or of the service.
package instance

import (
	"slices"
	"sync"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"
)

// Cache holds an instancer's latest event and sends it to every
// subscriber: at once on Register, then on every change. The zero value is
// ready to use.
type Cache struct {
	mu    sync.Mutex
	state sd.Event
	subs  map[chan<- sd.Event]bool
}

// Update records ev and, if it differs from the last one, sends it to every
// subscriber. Subscribers must keep receiving: a send blocks Update, as in
// go-kit's own cache.
func (c *Cache) Update(ev sd.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev.Instances = slices.Clone(ev.Instances)
	slices.Sort(ev.Instances)
	if slices.Equal(ev.Instances, c.state.Instances) && errText(ev.Err) == errText(c.state.Err) {
		return
	}
	c.state = ev
	for ch := range c.subs {
		ch <- copyEvent(ev)
	}
}

// State returns the latest event.
func (c *Cache) State() sd.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return copyEvent(c.state)
}

// Register implements sd.Instancer: ch gets the latest event at once.
func (c *Cache) Register(ch chan<- sd.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		c.subs = make(map[chan<- sd.Event]bool)
	}
	c.subs[ch] = true
	ch <- copyEvent(c.state)
}

// Deregister implements sd.Instancer.
func (c *Cache) Deregister(ch chan<- sd.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, ch)
}

// copyEvent gives each subscriber its own slice: go-kit's endpoint cache
// sorts the one it gets.
func copyEvent(ev sd.Event) sd.Event {
	ev.Instances = slices.Clone(ev.Instances)
	return ev
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// RegistrarMetrics are what every registrar in internal/sd reports; every
// field must be set.
type RegistrarMetrics struct {
	Registrations prometheus.Counter // times the instance registered (again included)
	Registered    prometheus.Gauge   // 1 while registered
	Errors        prometheus.Counter // failed registry calls
}
