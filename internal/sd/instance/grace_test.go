package instance

import (
	"slices"
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

// last is the instances of the latest event r got, nil for none.
func last(r *testenv.Recorder) []string {
	events := r.Since(0)
	if len(events) == 0 {
		return nil
	}
	return events[len(events)-1].Instances
}

// sawEmptyAfterInstances reports whether r got an empty set, not an error,
// after a set with instances.
func sawEmptyAfterInstances(r *testenv.Recorder) bool {
	had := false
	for _, ev := range r.Since(0) {
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
	r := testenv.Record(t, g)

	src.Update(sd.Event{Instances: []string{"a:1", "b:1"}})
	testenv.PollUntil(t, 5*time.Second, "both instances passed on", func() bool {
		return slices.Equal(last(r), []string{"a:1", "b:1"})
	})
	src.Update(sd.Event{Instances: []string{}}) // the registry restarted empty
	src.Update(sd.Event{Instances: []string{"a:1"}})
	testenv.PollUntil(t, 5*time.Second, "the re-registered instance passed on", func() bool {
		return slices.Equal(last(r), []string{"a:1"})
	})
	if sawEmptyAfterInstances(r) {
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
	r := testenv.Record(t, g)

	src.Update(sd.Event{Instances: []string{"a:1"}})
	testenv.PollUntil(t, 5*time.Second, "the instance passed on", func() bool {
		return slices.Equal(last(r), []string{"a:1"})
	})
	src.Update(sd.Event{Instances: []string{}})
	testenv.PollUntil(t, 5*time.Second, "the empty set passed on after the grace", func() bool { return sawEmptyAfterInstances(r) })
	src.Update(sd.Event{Instances: []string{"b:1", "a:1"}}) // and back, at once
	testenv.PollUntil(t, 5*time.Second, "instances passed on again", func() bool {
		return slices.Equal(last(r), []string{"a:1", "b:1"})
	})
}
