package consul

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"stringsvc/internal/testenv"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name            string
		prev, got, want uint64
	}{
		{name: "first answer", prev: 0, got: 7, want: 7},
		{name: "grows", prev: 7, got: 9, want: 9},
		{name: "same: the wait ran out", prev: 9, got: 9, want: 9},
		{name: "backwards: reset to answer at once", prev: 9, got: 3, want: 0},
		{name: "zero would not block", prev: 0, got: 0, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextIndex(tt.prev, tt.got); got != tt.want {
				t.Errorf("nextIndex(%d, %d) = %d; want %d", tt.prev, tt.got, got, tt.want)
			}
		})
	}
}

// TestInstancerCheckCritical makes an instance's /readyz fail: it must
// leave the passing set, and come back once /readyz passes again.
func TestInstancerCheckCritical(t *testing.T) {
	t.Parallel()
	agent := testenv.StartConsul(t)
	logger := newLogger(t)
	client := newClient(t, agent.Addr)
	a, b := startBackend(t), startBackend(t)
	runRegistrar(t, client, Service{Name: "svc", Addr: a.Addr}, registrarMetrics(), logger)
	runRegistrar(t, client, Service{Name: "svc", Addr: b.Addr}, registrarMetrics(), logger)
	in := NewInstancer(client, "svc", "", 0, nil, logger)
	t.Cleanup(in.Stop)
	rec := testenv.Record(t, in)
	both := []string{a.Addr, b.Addr}
	if b.Addr < a.Addr {
		both = []string{b.Addr, a.Addr}
	}
	rec.WaitFor(t, both...)

	b.down.Store(true)
	rec.WaitFor(t, a.Addr)
	b.down.Store(false)
	rec.WaitFor(t, both...)
}

// TestInstancerTag follows only the instances with a tag.
func TestInstancerTag(t *testing.T) {
	t.Parallel()
	agent := testenv.StartConsul(t)
	logger := newLogger(t)
	client := newClient(t, agent.Addr)
	blue, plain := startBackend(t), startBackend(t)
	blueSvc := Service{Name: "svc", Addr: blue.Addr, Tags: []string{"blue"}}
	runRegistrar(t, client, blueSvc, registrarMetrics(), logger)
	runRegistrar(t, client, Service{Name: "svc", Addr: plain.Addr}, registrarMetrics(), logger)
	everyone := NewInstancer(client, "svc", "", 0, nil, logger)
	t.Cleanup(everyone.Stop)
	all := testenv.Record(t, everyone)
	in := NewInstancer(client, "svc", "blue", 0, nil, logger)
	t.Cleanup(in.Stop)
	rec := testenv.Record(t, in)
	rec.WaitFor(t, blue.Addr)
	testenv.PollUntil(t, 20*time.Second, "both instances pass", func() bool {
		return len(lastInstances(all)) == 2
	})
	rec.WaitFor(t, blue.Addr)
}

// TestInstancerAgentRestart restarts the -dev agent, which forgets
// everything. While it is down the instancer must send an error, which
// sd.NewEndpointer answers by keeping the last set, not an empty set; once
// it is back the set is empty until the registrar, which asks every check
// interval, has registered again.
func TestInstancerAgentRestart(t *testing.T) {
	t.Parallel()
	agent := testenv.StartConsul(t)
	logger := newLogger(t)
	client := newClient(t, agent.Addr)
	a := startBackend(t)
	metrics := registrarMetrics()
	stop := runRegistrar(t, client, Service{Name: "svc", Addr: a.Addr}, metrics, logger)
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors"})
	in := NewInstancer(client, "svc", "", 0, errs, logger)
	t.Cleanup(in.Stop)
	rec := testenv.Record(t, in)
	rec.WaitFor(t, a.Addr)
	seen := rec.Len()

	agent.Stop(t)
	rec.WaitErr(t, seen)
	if events := rec.Since(seen); events[0].Err == nil {
		t.Errorf("first event after the agent stopped = %v; want an error", events[0].Instances)
	}
	agent.Start(t)
	rec.WaitFor(t, a.Addr)
	if got := value(t, metrics.Registrations); got != 2 {
		t.Errorf("registrations = %v; want 2", got)
	}
	if got := value(t, errs); got < 1 {
		t.Errorf("errors counted = %v; want at least 1", got)
	}
	stop() // while the agent started last still runs
	rec.WaitFor(t)
}

// lastInstances returns the latest event's instances.
func lastInstances(r *testenv.Recorder) []string {
	events := r.Since(0)
	if len(events) == 0 {
		return nil
	}
	return events[len(events)-1].Instances
}
