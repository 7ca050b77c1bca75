package zk

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"stringsvc/internal/testenv"
)

// TestInstancerServerRestart stops ZooKeeper and starts it again on its
// data. Meanwhile the instancer must send an error, never an empty set, and
// then the set again: the sessions are in the data, so the node survives.
func TestInstancerServerRestart(t *testing.T) {
	t.Parallel()
	z := testenv.StartZooKeeper(t)
	logger := newLogger(t)
	// The longest session the server allows (20 ticks), so that it outlives
	// the restart.
	client := newClient(t, z.Addr, 20*testenv.ZooKeeperTick, logger)
	stop := runRegistrar(t, client, "127.0.0.1:1001", registrarMetrics(), logger)
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors"})
	in := NewInstancer(client, "svc", time.Second, errs, logger)
	t.Cleanup(in.Stop)
	rec := record(t, in)
	rec.waitFor(t, "127.0.0.1:1001")
	seen := rec.len()

	z.Stop(t)
	rec.waitErr(t, seen)
	z.Start(t)
	rec.waitFor(t, "127.0.0.1:1001")

	for _, ev := range rec.since(seen) {
		if ev.Err == nil && !slices.Equal(ev.Instances, []string{"127.0.0.1:1001"}) {
			t.Errorf("event during the restart = %v; want an error or the one instance", ev.Instances)
		}
	}
	noSession := func(ev sd.Event) bool { return errors.Is(ev.Err, errNoSession) }
	if !slices.ContainsFunc(rec.since(seen), noSession) {
		t.Errorf("events during the restart have no %q error", errNoSession)
	}
	if got := value(t, errs); got < 1 {
		t.Errorf("errors counted = %v; want at least 1", got)
	}
	stop() // while the server started last still runs
	rec.waitFor(t)
}
