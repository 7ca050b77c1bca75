package testenv

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
)

// Recorder keeps every event an instancer sends.
type Recorder struct {
	mu     sync.Mutex
	events []sd.Event
}

// Record subscribes to in until the test ends.
func Record(tb testing.TB, in sd.Instancer) *Recorder {
	tb.Helper()
	rec := &Recorder{}
	ch := make(chan sd.Event)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case ev := <-ch:
				rec.mu.Lock()
				rec.events = append(rec.events, ev)
				rec.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	in.Register(ch)
	tb.Cleanup(func() {
		in.Deregister(ch) // before done: a send under way must be taken
		close(done)
	})
	return rec
}

// Since returns the events from the nth on.
func (r *Recorder) Since(n int) []sd.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[min(n, len(r.events)):])
}

// Len is how many events there were.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// WaitFor waits until the latest event is the instances want.
func (r *Recorder) WaitFor(tb testing.TB, want ...string) {
	tb.Helper()
	PollUntil(tb, 20*time.Second, fmt.Sprintf("instancer sends %q", want), func() bool {
		events := r.Since(0)
		if len(events) == 0 {
			return false
		}
		last := events[len(events)-1]
		return last.Err == nil && slices.Equal(last.Instances, want)
	})
}

// WaitErr waits until an event from the nth on is an error.
func (r *Recorder) WaitErr(tb testing.TB, n int) {
	tb.Helper()
	PollUntil(tb, 20*time.Second, "instancer sends an error", func() bool {
		return slices.ContainsFunc(r.Since(n), func(ev sd.Event) bool { return ev.Err != nil })
	})
}
