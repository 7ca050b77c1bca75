package zk

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"stringsvc/internal/sd/instance"
	"stringsvc/internal/testenv"
)

func TestRegistrarInstancer(t *testing.T) {
	t.Parallel()
	z := testenv.StartZooKeeper(t)
	logger := newLogger(t)
	client := newClient(t, z.Addr, sessionTimeout, logger)
	in := NewInstancer(client, "svc", time.Second, nil, logger)
	t.Cleanup(in.Stop)
	rec := testenv.Record(t, in)
	rec.WaitFor(t) // the service's node is created, with no children

	metrics := registrarMetrics()
	stopA := runRegistrar(t, client, "127.0.0.1:1001", metrics, logger)
	rec.WaitFor(t, "127.0.0.1:1001")
	if got := value(t, metrics.Registered); got != 1 {
		t.Errorf("registered = %v; want 1", got)
	}

	// A second instance, with a session of its own.
	other := newClient(t, z.Addr, sessionTimeout, logger)
	stopB := runRegistrar(t, other, "127.0.0.1:1002", registrarMetrics(), logger)
	rec.WaitFor(t, "127.0.0.1:1001", "127.0.0.1:1002")
	stopB()
	rec.WaitFor(t, "127.0.0.1:1001")

	stopA()
	rec.WaitFor(t)
	if got := value(t, metrics.Registered); got != 0 {
		t.Errorf("registered after Run returned = %v; want 0", got)
	}
	if got := value(t, metrics.Registrations); got != 1 {
		t.Errorf("registrations = %v; want 1", got)
	}
}

// TestRegistrarNodeDeleted deletes the node behind the registrar's back:
// its watch must see it and create the node again.
func TestRegistrarNodeDeleted(t *testing.T) {
	t.Parallel()
	z := testenv.StartZooKeeper(t)
	logger := newLogger(t)
	client := newClient(t, z.Addr, sessionTimeout, logger)
	metrics := registrarMetrics()
	runRegistrar(t, client, "127.0.0.1:1001", metrics, logger)
	in := NewInstancer(client, "svc", time.Minute, nil, logger) // resync too slow to help
	t.Cleanup(in.Stop)
	rec := testenv.Record(t, in)
	rec.WaitFor(t, "127.0.0.1:1001")

	admin := newClient(t, z.Addr, sessionTimeout, logger)
	testenv.PollUntil(t, 10*time.Second, "delete the node", func() bool {
		err := admin.conn.Delete(ServicePath("svc")+"/127.0.0.1:1001", -1)
		return err == nil
	})
	testenv.PollUntil(t, 10*time.Second, "the node created again", func() bool {
		return value(t, metrics.Registrations) == 2
	})
	rec.WaitFor(t, "127.0.0.1:1001")
}

// TestRegistrarReplacesStaleNode leaves a node of the same address under
// another session, as a crashed previous run would until its session
// expired: the registrar must take it over, not wait or fail.
func TestRegistrarReplacesStaleNode(t *testing.T) {
	t.Parallel()
	z := testenv.StartZooKeeper(t)
	logger := newLogger(t)
	stale := newClient(t, z.Addr, 4*sessionTimeout, logger)
	node := ServicePath("svc") + "/127.0.0.1:1001"
	testenv.PollUntil(t, 10*time.Second, "create the stale node", func() bool {
		if err := stale.createPath(ServicePath("svc")); err != nil {
			return false
		}
		_, err := stale.conn.Create(node, []byte("127.0.0.1:1001"), zk.FlagEphemeral,
			zk.WorldACL(zk.PermAll))
		return err == nil
	})

	client := newClient(t, z.Addr, sessionTimeout, logger)
	runRegistrar(t, client, "127.0.0.1:1001", registrarMetrics(), logger)
	testenv.PollUntil(t, 10*time.Second, "node owned by the registrar's session", func() bool {
		_, stat, err := stale.conn.Exists(node)
		return err == nil && stat.EphemeralOwner == client.SessionID()
	})
}

func TestRegistrarUnreachable(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t) // nothing listens there
	client := newClient(t, addr, sessionTimeout, newLogger(t))
	r, err := NewRegistrar(client, Service{Name: "svc", Addr: "127.0.0.1:1001"}, time.Second,
		instance.RegistrarMetrics{}, newLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	const firstTimeout = time.Second
	start := time.Now()
	err = r.Run(context.Background(), firstTimeout)
	if err == nil || !strings.Contains(err.Error(), "no success within") {
		t.Fatalf("Run with no ZooKeeper = %v; want an error saying no success within %v",
			err, firstTimeout)
	}
	if elapsed := time.Since(start); elapsed < firstTimeout {
		t.Errorf("Run returned after %v; want after firstTimeout %v", elapsed, firstTimeout)
	}
}
