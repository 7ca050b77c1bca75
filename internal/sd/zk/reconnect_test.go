//go:build !race

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

// go-zookeeper/zk v1.0.4, the newest, races on Conn.lastZxid between its
// recvLoop and sendSetWatches whenever it reconnects with watches set
// (go-zookeeper/zk pull request 35, not merged): the race detector flags
// the library, not this code. The tests that make it reconnect are built
// without -race (//go:build !race); .ci/run runs them so.

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
	rec := testenv.Record(t, in)
	rec.WaitFor(t, "127.0.0.1:1001")
	seen := rec.Len()

	z.Stop(t)
	rec.WaitErr(t, seen)
	z.Start(t)
	rec.WaitFor(t, "127.0.0.1:1001")

	for _, ev := range rec.Since(seen) {
		if ev.Err == nil && !slices.Equal(ev.Instances, []string{"127.0.0.1:1001"}) {
			t.Errorf("event during the restart = %v; want an error or the one instance", ev.Instances)
		}
	}
	noSession := func(ev sd.Event) bool { return errors.Is(ev.Err, errNoSession) }
	if !slices.ContainsFunc(rec.Since(seen), noSession) {
		t.Errorf("events during the restart have no %q error", errNoSession)
	}
	if got := value(t, errs); got < 1 {
		t.Errorf("errors counted = %v; want at least 1", got)
	}
	stop() // while the server started last still runs
	rec.WaitFor(t)
}

// TestRegistrarSessionExpiry cuts the registrar's connection for longer
// than its session timeout, so that the server expires the session and
// deletes the node; once the connection is back the client opens a new
// session and the node must come back under it. (Stopping the server with
// SIGSTOP instead would race: on SIGCONT the server may take the client's
// waiting reconnect before it expires the session, and keep it.)
func TestRegistrarSessionExpiry(t *testing.T) {
	t.Parallel()
	z := testenv.StartZooKeeper(t)
	logger := newLogger(t)
	proxy := startCutProxy(t, z.Addr)
	client := newClient(t, proxy.Addr, sessionTimeout, logger)
	metrics := registrarMetrics()
	runRegistrar(t, client, "127.0.0.1:1001", metrics, logger)

	watcher := newClient(t, z.Addr, 4*sessionTimeout, logger) // not through the proxy
	in := NewInstancer(watcher, "svc", time.Second, nil, logger)
	t.Cleanup(in.Stop)
	rec := testenv.Record(t, in)
	rec.WaitFor(t, "127.0.0.1:1001")
	first := client.SessionID()

	proxy.Cut()
	rec.WaitFor(t) // the server expired the session and deleted its node
	proxy.Restore()
	rec.WaitFor(t, "127.0.0.1:1001")
	if got := client.SessionID(); got == first || got == 0 {
		t.Errorf("session after expiry = %#x; want a new one (the first was %#x)", got, first)
	}
	if got := value(t, metrics.Registrations); got != 2 {
		t.Errorf("registrations = %v; want 2", got)
	}
}
