//go:build !race

package main

import (
	"slices"
	"testing"
	"time"

	"stringsvc/internal/testenv"
)

// go-zookeeper/zk v1.0.4, the newest, races on Conn.lastZxid between its
// recvLoop and sendSetWatches whenever it reconnects with watches set
// (go-zookeeper/zk pull request 35, not merged): the race detector flags
// the library, not this code. The tests that make it reconnect are built
// without -race (//go:build !race); .ci/run runs them so.

func TestZooKeeperRestartUnderLoad(t *testing.T) {
	z := testenv.StartZooKeeper(t)
	conn := newTestZKConn(t, z)
	backends := []*stringsvcRun{
		startStringsvc(t, zkBackendArgs(z.Addr)...),
		startStringsvc(t, zkBackendArgs(z.Addr)...),
		startStringsvc(t, zkBackendArgs(z.Addr)...),
	}
	proxy := startStringsvc(t, zkProxyArgs(z.Addr)...)
	want := addrs(backends...)
	testenv.PollUntil(t, 10*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, want))
	before := zkNodes(t, conn)
	load := startLoad(t, proxy.addr, testRate)
	load.waitMore(t, 100)

	start := time.Now()
	z.Stop(t)
	const stale = `stringsvc_discovery_stale{source="zk"}`
	testenv.PollUntil(t, 10*time.Second, "proxy reports a stale set", func() bool {
		return scrape(t, proxy.addr)[stale] == 1
	})
	noticed := time.Since(start)
	if got := proxySet(t, proxy.addr); !slices.Equal(got, want) {
		t.Errorf("proxy set with zookeeper down = %v; want the last known %v", got, want)
	}
	load.waitMore(t, 100)
	failuresWhileDown := len(load.Failures())

	restart := time.Now()
	z.Start(t) // on the same data: the sessions and their nodes are restored
	up := time.Since(restart)
	testenv.PollUntil(t, 15*time.Second, "every backend's node in zookeeper", zkRegistered(conn, backends...))
	registered := time.Since(restart)
	testenv.PollUntil(t, 10*time.Second, "proxy no longer stale", func() bool {
		return scrape(t, proxy.addr)[stale] == 0
	})
	testenv.PollUntil(t, 5*time.Second, "proxy follows every backend", hasSet(t, proxy.addr, want))
	after := zkNodes(t, conn)
	sessionsKept := 0
	for _, b := range backends {
		if after[b.addr].owner == before[b.addr].owner {
			sessionsKept++
		}
		if got := scrape(t, b.addr)["stringsvc_registered"]; got != 1 {
			t.Errorf("backend %s stringsvc_registered = %v; want 1", b.addr, got)
		}
	}
	load.waitMore(t, 100)
	ok, failures := load.Stop()
	t.Logf("zookeeper restart: proxy stale after %v; server down %v, up again in %v; every node there "+
		"%v after the restart, %d of %d under the session from before; failures while down: %d",
		noticed.Round(time.Millisecond), restart.Sub(start).Round(time.Millisecond),
		up.Round(time.Millisecond), registered.Round(time.Millisecond), sessionsKept, len(backends),
		failuresWhileDown)
	checkNoFailures(t, "load across the zookeeper restart", ok, failures)
	if got := len(after); got != len(backends) {
		t.Errorf("%d nodes in zookeeper after the restart; want %d: %v", got, len(backends), after)
	}
}
