package main

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	zksd "stringsvc/internal/sd/zk"
	"stringsvc/internal/testenv"
)

// Discovery through a real ZooKeeper server (testenv.StartZooKeeper):
// backends keep an ephemeral node under /services/stringsvc in a session
// of about 2s, and proxies watch the children. Modelled on the etcd tests
// in discovery_test.go.

// zkSession is the session timeout of the test backends and proxies: a
// SIGKILLed backend's node goes after it.
const zkSession = 2 * time.Second

// zkBackendArgs are a test backend's flags: registered in ZooKeeper, its
// node checked every 300ms besides on every event.
func zkBackendArgs(addr string) []string {
	return []string{"-registry", "zk://" + addr, "-registry.zk-session-timeout", zkSession.String(),
		"-registry.resync", "300ms", "-registry.timeout", "10s"}
}

// zkProxyArgs are a test proxy's flags, following ZooKeeper, with a 3s
// grace for a moment with no instances.
func zkProxyArgs(addr string) []string {
	return proxyArgs("zk://"+addr, "-registry.zk-session-timeout", zkSession.String(),
		"-registry.empty-grace", "3s")
}

// zkNode is an instance's node: its data and the session that owns it.
type zkNode struct {
	data  string
	owner int64
}

// newTestZKConn returns a connection to z of the test's own, closed when
// the test ends.
func newTestZKConn(tb testing.TB, z *testenv.ZooKeeper) *gozk.Conn {
	tb.Helper()
	conn, _, err := gozk.Connect([]string{z.Addr}, 10*time.Second, gozk.WithLogInfo(false),
		gozk.WithLogger(zkQuiet{}))
	if err != nil {
		tb.Fatalf("connect to zookeeper %s: %v", z.Addr, err)
	}
	tb.Cleanup(conn.Close)
	return conn
}

// zkQuiet drops the library's lines (reconnects while the server is
// down): they would outlive the test's log.
type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}

// zkNodes returns the instances' nodes under /services/stringsvc by name
// (the advertised address).
func zkNodes(tb testing.TB, conn *gozk.Conn) map[string]zkNode {
	tb.Helper()
	nodes, err := readZKNodes(conn)
	if err != nil {
		tb.Fatal(err)
	}
	return nodes
}

func readZKNodes(conn *gozk.Conn) (map[string]zkNode, error) {
	dir := zksd.ServicePath("stringsvc")
	children, _, err := conn.Children(dir)
	if errors.Is(err, gozk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("zookeeper children of %s: %w", dir, err)
	}
	nodes := make(map[string]zkNode, len(children))
	for _, c := range children {
		data, stat, err := conn.Get(path.Join(dir, c))
		if errors.Is(err, gozk.ErrNoNode) {
			continue // gone since the list
		}
		if err != nil {
			return nil, fmt.Errorf("zookeeper get %s/%s: %w", dir, c, err)
		}
		nodes[c] = zkNode{data: string(data), owner: stat.EphemeralOwner}
	}
	return nodes, nil
}

// zkRegistered reports whether every one of runs has its node, holding its
// address. A failed read is a no: the test's own connection may still be
// reconnecting after a restart of the server.
func zkRegistered(conn *gozk.Conn, runs ...*stringsvcRun) func() bool {
	return func() bool {
		nodes, err := readZKNodes(conn)
		if err != nil {
			return false
		}
		for _, r := range runs {
			if n, ok := nodes[r.addr]; !ok || n.data != r.addr {
				return false
			}
		}
		return true
	}
}

func TestZooKeeperDiscoveryFollowsRegisteredBackends(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	conn := newTestZKConn(t, z)
	early := startStringsvc(t, zkProxyArgs(z.Addr)...)
	if got := getStatus(t, early.addr, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz of a proxy without instances = %d; want 503", got)
	}

	var backends []*stringsvcRun
	for i := range 3 {
		start := time.Now()
		b := startStringsvc(t, zkBackendArgs(z.Addr)...)
		backends = append(backends, b)
		testenv.PollUntil(t, 10*time.Second, "backend's node in zookeeper", zkRegistered(conn, b))
		registered := time.Since(start)
		testenv.PollUntil(t, 5*time.Second, "early proxy knows the new backend", func() bool {
			return slices.Contains(proxySet(t, early.addr), b.addr)
		})
		t.Logf("backend %d (%s): node in zookeeper %v after start, in the proxy's set after %v",
			i+1, b.addr, registered.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	late := startStringsvc(t, zkProxyArgs(z.Addr)...)
	want := addrs(backends...)
	for i, p := range []*stringsvcRun{early, late} {
		took := testenv.PollUntil(t, 5*time.Second, "proxy knows every backend", hasSet(t, p.addr, want))
		t.Logf("proxy %d has the full set %v after %v more", i+1, want, took.Round(time.Millisecond))
		if got := getStatus(t, p.addr, "/readyz"); got != http.StatusOK {
			t.Errorf("/readyz of proxy %d = %d; want 200", i+1, got)
		}
	}

	const n = 300
	sendN(t, early.addr, n)
	checkEvenShare(t, successes(t, early.addr), want, n)
	if got := scrape(t, early.addr)[`stringsvc_discovery_instances{source="zk"}`]; got != 3 {
		t.Errorf(`stringsvc_discovery_instances{source="zk"} = %v; want 3`, got)
	}
}

func TestZooKeeperRollingRestartUnderLoad(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	conn := newTestZKConn(t, z)
	backends := []*stringsvcRun{
		startStringsvc(t, zkBackendArgs(z.Addr)...),
		startStringsvc(t, zkBackendArgs(z.Addr)...),
		startStringsvc(t, zkBackendArgs(z.Addr)...),
	}
	proxy := startStringsvc(t, zkProxyArgs(z.Addr)...)
	testenv.PollUntil(t, 10*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, addrs(backends...)))
	load := startLoad(t, proxy.addr, testRate)
	load.waitMore(t, 100)

	for i, old := range backends {
		start := time.Now()
		old.cancel() // as SIGTERM does: deregister, then drain
		testenv.PollUntil(t, 5*time.Second, "proxy drops the stopped backend", func() bool {
			return !slices.Contains(proxySet(t, proxy.addr), old.addr)
		})
		removed := time.Since(start)
		if err := old.stop(t); err != nil {
			t.Fatalf("stopped backend: run returned %v", err)
		}
		stopped := time.Since(start)
		if n, ok := zkNodes(t, conn)[old.addr]; ok {
			t.Errorf("node of stopped backend %s still in zookeeper (session %x); want it deleted",
				old.addr, n.owner)
		}
		load.waitMore(t, 100)

		start = time.Now()
		backends[i] = startStringsvc(t, zkBackendArgs(z.Addr)...)
		testenv.PollUntil(t, 10*time.Second, "proxy routes to the replacement", func() bool {
			return successes(t, proxy.addr)[backends[i].addr] > 0
		})
		first := time.Since(start)
		load.waitMore(t, 100)
		t.Logf("backend %d: out of the proxy's set %v after cancel (run returned after %v); "+
			"replacement's first proxied request %v after its start; failures so far: %d",
			i+1, removed.Round(time.Millisecond), stopped.Round(time.Millisecond),
			first.Round(time.Millisecond), len(load.Failures()))
	}
	ok, failures := load.Stop()
	checkNoFailures(t, fmt.Sprintf("rolling restart of 3 backends at %d requests/s", testRate), ok, failures)
	if got, want := proxySet(t, proxy.addr), addrs(backends...); !slices.Equal(got, want) {
		t.Errorf("proxy set = %v; want %v", got, want)
	}
}

func TestZooKeeperKilledBackendLeavesAtSessionExpiry(t *testing.T) {
	bin := buildBinary(t)
	z := testenv.StartZooKeeper(t)
	conn := newTestZKConn(t, z)
	b1 := startStringsvc(t, zkBackendArgs(z.Addr)...)
	b2 := startStringsvc(t, zkBackendArgs(z.Addr)...)
	victim := startStringsvcProcess(t, bin, zkBackendArgs(z.Addr)...)
	proxy := startStringsvc(t, zkProxyArgs(z.Addr)...)
	survivors := addrs(b1, b2)
	want := slices.Sorted(slices.Values(append([]string{victim.addr}, survivors...)))
	testenv.PollUntil(t, 10*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, want))
	load := startLoad(t, proxy.addr, testRate)
	testenv.PollUntil(t, 5*time.Second, "the process backend gets traffic", func() bool {
		return successes(t, proxy.addr)[victim.addr] > 0
	})

	start := time.Now()
	victim.Kill(t) // SIGKILL: no deregistration; the node lives as long as the session
	testenv.PollUntil(t, 10*time.Second, "killed backend's node goes with its session", func() bool {
		_, ok := zkNodes(t, conn)[victim.addr]
		return !ok
	})
	expired := time.Since(start)
	testenv.PollUntil(t, 5*time.Second, "proxy drops the killed backend", hasSet(t, proxy.addr, survivors))
	dropped := time.Since(start)
	load.waitMore(t, 100)
	ok, failures := load.Stop()
	t.Logf("SIGKILLed backend: node gone %v after the kill (session timeout %v), out of the proxy's set after %v",
		expired.Round(time.Millisecond), zkSession, dropped.Round(time.Millisecond))
	checkNoFailures(t, "load across the kill", ok, failures)
	if expired < zkSession/4 {
		t.Errorf("node gone %v after SIGKILL; want about the %v session timeout: was it deleted?",
			expired, zkSession)
	}
}

func TestZooKeeperBadRegistry(t *testing.T) {
	bin := buildBinary(t)
	checkRegistryFailure(t, bin, registryFailureCases{
		unparseable: [][]string{
			{"-registry", "zk://h"},
			{"-registry", "zk://"},
			{"-registry", "zk://127.0.0.1:2181,h"},
			{"-proxy", "zk://127.0.0.1:99999"},
		},
		unreachable: fmt.Sprintf("zk://127.0.0.1:%d", testenv.FreePort(t)),
	})
}

// TestZooKeeperGRPCRegistration: with -registry.transport grpc the node,
// named for the gRPC address, holds grpc://<address>, and a proxy following
// ZooKeeper calls it over gRPC.
func TestZooKeeperGRPCRegistration(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	backend := startStringsvc(t, append(zkBackendArgs(z.Addr), "-grpc.listen", "127.0.0.1:0",
		"-registry.transport", "grpc")...)
	grpcAddr := backend.stderr.WaitMatch(t, grpcListeningLine, backend.exited, waitTimeout)[1]
	conn := newTestZKConn(t, z)
	testenv.PollUntil(t, 10*time.Second, "the gRPC registration in ZooKeeper", func() bool {
		nodes, err := readZKNodes(conn)
		return err == nil && nodes[grpcAddr].data == "grpc://"+grpcAddr
	})
	proxy := startStringsvc(t, zkProxyArgs(z.Addr)...)
	testenv.PollUntil(t, 10*time.Second, "proxy follows the gRPC instance",
		hasSet(t, proxy.addr, []string{"grpc://" + grpcAddr}))
	sendN(t, proxy.addr, 10)
	if got := successes(t, proxy.addr)["grpc://"+grpcAddr]; got != 10 {
		t.Errorf("successes through grpc://%s = %v; want 10", grpcAddr, got)
	}
}
