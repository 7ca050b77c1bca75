package instance

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"stringsvc/internal/testenv"
)

// source is a Cache that is an sd.Instancer.
type source struct{ Cache }

func (*source) Stop() {}

// recorder keeps every event a subscriber received.
type recorder struct {
	mu     sync.Mutex
	events []sd.Event
}

func record(tb testing.TB, in sd.Instancer) *recorder {
	r := new(recorder)
	ch := make(chan sd.Event)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	}()
	in.Register(ch)
	tb.Cleanup(func() {
		in.Deregister(ch)
		close(ch)
		<-done
	})
	return r
}

func (r *recorder) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return nil
	}
	return r.events[len(r.events)-1].Instances
}

func (r *recorder) sawEmptyAfterInstances() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	had := false
	for _, ev := range r.events {
		if len(ev.Instances) > 0 {
			had = true
		} else if had && ev.Err == nil {
			return true
		}
	}
	return false
}

func TestGracedHoldsAnEmptySetWhileInstancesComeBack(t *testing.T) {
	src := new(source)
	held := prometheus.NewCounter(prometheus.CounterOpts{Name: "held"})
	g := NewGraced(src, time.Hour, held, log.NewNopLogger()) // the grace never runs out here
	t.Cleanup(g.Stop)
	r := record(t, g)

	src.Update(sd.Event{Instances: []string{"a:1", "b:1"}})
	testenv.PollUntil(t, 5*time.Second, "both instances passed on", func() bool {
		return slices.Equal(r.last(), []string{"a:1", "b:1"})
	})
	src.Update(sd.Event{Instances: []string{}}) // the registry restarted empty
	src.Update(sd.Event{Instances: []string{"a:1"}})
	testenv.PollUntil(t, 5*time.Second, "the re-registered instance passed on", func() bool {
		return slices.Equal(r.last(), []string{"a:1"})
	})
	if r.sawEmptyAfterInstances() {
		t.Errorf("subscriber saw an empty set; want the last set kept through the grace period")
	}
	if got := testutil.ToFloat64(held); got != 1 {
		t.Errorf("held = %v; want 1", got)
	}
}

func TestGracedPassesAnEmptySetThatHolds(t *testing.T) {
	src := new(source)
	held := prometheus.NewCounter(prometheus.CounterOpts{Name: "held"})
	g := NewGraced(src, 10*time.Millisecond, held, log.NewNopLogger())
	t.Cleanup(g.Stop)
	r := record(t, g)

	src.Update(sd.Event{Instances: []string{"a:1"}})
	testenv.PollUntil(t, 5*time.Second, "the instance passed on", func() bool {
		return slices.Equal(r.last(), []string{"a:1"})
	})
	src.Update(sd.Event{Instances: []string{}})
	testenv.PollUntil(t, 5*time.Second, "the empty set passed on after the grace", r.sawEmptyAfterInstances)
	src.Update(sd.Event{Instances: []string{"b:1", "a:1"}}) // and back, at once
	testenv.PollUntil(t, 5*time.Second, "instances passed on again", func() bool {
		return slices.Equal(r.last(), []string{"a:1", "b:1"})
	})
}
