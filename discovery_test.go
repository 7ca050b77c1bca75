package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	etcdsd "stringsvc/internal/sd/etcd"
	"stringsvc/internal/testenv"
	"testing"
	"time"
)

// Discovery against real servers: etcd and dnsmasq run as processes on
// 127.0.0.1 (see discovery_helpers_test.go); backends and proxies are the
// whole program, mostly in-process. Measured figures go to t.Logf; the
// asserted bounds are loose on purpose (a busy 2-core CI box).

const testRate = 200 // requests per second of the load generators

// proxyArgs are a test proxy's flags: attempt timeouts generous enough that
// a slow moment of the machine is not a failed request, and short resync
// and refresh intervals.
func proxyArgs(target string, extra ...string) []string {
	return append([]string{
		// Round-robin, so that every instance's share shows it is followed.
		"-proxy", target, "-proxy.balancer", "roundrobin", "-proxy.attempt-timeout", "1s", "-proxy.timeout", "3s",
		"-registry.resync", "300ms", "-dns.refresh", "300ms",
	}, extra...)
}

// backendArgs are a registered test backend's flags, with a 1s lease.
func backendArgs(registry string) []string {
	return []string{"-registry", registry, "-registry.ttl", "1s", "-registry.timeout", "10s"}
}

func addrs(runs ...*stringsvcRun) []string {
	var a []string
	for _, r := range runs {
		a = append(a, r.addr)
	}
	slices.Sort(a)
	return a
}

// hasSet reports whether the proxy at addr has endpoints for exactly want.
func hasSet(tb testing.TB, addr string, want []string) func() bool {
	return func() bool { return slices.Equal(proxySet(tb, addr), want) }
}

func checkNoFailures(t *testing.T, what string, ok int64, failures []string) {
	t.Helper()
	t.Logf("%s: %d requests succeeded, %d failed", what, ok, len(failures))
	if len(failures) > 0 {
		t.Errorf("%s: %d of %d requests failed; first: %q", what, len(failures), ok+int64(len(failures)),
			failures[:min(3, len(failures))])
	}
}

// checkEvenShare fails unless each of want answered at least a fifth of n
// requests (an even share is a third).
func checkEvenShare(t *testing.T, got map[string]float64, want []string, n int) {
	t.Helper()
	t.Logf("%d requests over %d instances: %v", n, len(want), got)
	for _, w := range want {
		if got[w] < float64(n)/5 {
			t.Errorf("instance %s answered %v of %d requests; want about %d", w, got[w], n, n/len(want))
		}
	}
}

func TestEtcdDiscoveryFollowsRegisteredBackends(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	registry := "etcd://" + etcd.Endpoint
	cli := newTestEtcdClient(t, etcd)
	prefix := etcdsd.ServicePrefix("stringsvc")

	early := startStringsvc(t, proxyArgs(registry)...)
	if got := getStatus(t, early.addr, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz of a proxy without instances = %d; want 503", got)
	}

	var (
		backends []*stringsvcRun
		proxies  = []*stringsvcRun{early}
		load     *loadGen
		client   = &http.Client{Timeout: 10 * time.Second}
	)
	defer client.CloseIdleConnections()
	for i := range 3 {
		start := time.Now()
		b := startStringsvc(t, backendArgs(registry)...)
		backends = append(backends, b)
		testenv.PollUntil(t, 5*time.Second, "backend's key in etcd", func() bool {
			e, ok := etcdEntries(t, cli, prefix)[prefix+b.addr]
			return ok && e.value == b.addr
		})
		inEtcd := time.Since(start)
		testenv.PollUntil(t, 5*time.Second, "early proxy routes to the new backend", func() bool {
			if load == nil && sendHello(client, "http://"+early.addr+"/uppercase") != nil {
				return false // the proxy does not know the first backend yet
			}
			return successes(t, early.addr)[b.addr] > 0
		})
		t.Logf("backend %d (%s): key in etcd %v after start, first proxied request after %v",
			i+1, b.addr, inEtcd.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if load == nil {
			load = startLoad(t, early.addr, testRate)
		}
		load.waitMore(t, 100)
		if i == 1 {
			proxies = append(proxies, startStringsvc(t, proxyArgs(registry)...)) // among the backends
		}
	}
	late := startStringsvc(t, proxyArgs(registry)...)
	proxies = append(proxies, late)

	want := addrs(backends...)
	for i, p := range proxies {
		took := testenv.PollUntil(t, 5*time.Second, "proxy knows every backend", hasSet(t, p.addr, want))
		t.Logf("proxy %d of %d has the full set %v after %v more",
			i+1, len(proxies), want, took.Round(time.Millisecond))
		if got := getStatus(t, p.addr, "/readyz"); got != http.StatusOK {
			t.Errorf("/readyz of proxy %d = %d; want 200", i+1, got)
		}
	}
	ok, failures := load.Stop()
	checkNoFailures(t, "load while backends and proxies started", ok, failures)

	const n = 300
	sendN(t, late.addr, n)
	checkEvenShare(t, successes(t, late.addr), want, n)
	if got := scrape(t, late.addr)[`stringsvc_discovery_instances{source="etcd"}`]; got != 3 {
		t.Errorf(`stringsvc_discovery_instances{source="etcd"} = %v; want 3`, got)
	}
}

func TestEtcdRollingRestartUnderLoad(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	registry := "etcd://" + etcd.Endpoint
	cli := newTestEtcdClient(t, etcd)
	prefix := etcdsd.ServicePrefix("stringsvc")
	backends := []*stringsvcRun{
		startStringsvc(t, backendArgs(registry)...),
		startStringsvc(t, backendArgs(registry)...),
		startStringsvc(t, backendArgs(registry)...),
	}
	proxy := startStringsvc(t, proxyArgs(registry)...)
	testenv.PollUntil(t, 5*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, addrs(backends...)))
	load := startLoad(t, proxy.addr, testRate)
	load.waitMore(t, 100)

	for i, old := range backends {
		start := time.Now()
		old.cancel() // as SIGTERM does
		testenv.PollUntil(t, 5*time.Second, "proxy drops the stopped backend", func() bool {
			return !slices.Contains(proxySet(t, proxy.addr), old.addr)
		})
		removed := time.Since(start)
		if err := old.stop(t); err != nil {
			t.Fatalf("stopped backend: run returned %v", err)
		}
		stopped := time.Since(start)
		load.waitMore(t, 100)
		if _, ok := etcdEntries(t, cli, prefix)[prefix+old.addr]; ok {
			t.Errorf("key of stopped backend %s still in etcd", old.addr)
		}

		start = time.Now()
		backends[i] = startStringsvc(t, backendArgs(registry)...)
		testenv.PollUntil(t, 5*time.Second, "proxy routes to the replacement", func() bool {
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
	what := fmt.Sprintf("rolling restart of 3 backends at %d requests/s", testRate)
	checkNoFailures(t, what, ok, failures)
	if got := proxySet(t, proxy.addr); !slices.Equal(got, addrs(backends...)) {
		t.Errorf("proxy set = %v; want %v", got, addrs(backends...))
	}
}

func TestEtcdKilledBackendExpiresAfterTTL(t *testing.T) {
	bin := buildBinary(t)
	etcd := testenv.StartEtcd(t)
	registry := "etcd://" + etcd.Endpoint
	cli := newTestEtcdClient(t, etcd)
	prefix := etcdsd.ServicePrefix("stringsvc")
	b1 := startStringsvc(t, backendArgs(registry)...)
	b2 := startStringsvc(t, backendArgs(registry)...)
	victim := startStringsvcProcess(t, bin, backendArgs(registry)...)
	proxy := startStringsvc(t, proxyArgs(registry)...)
	survivors := addrs(b1, b2)
	want := slices.Sorted(slices.Values(append([]string{victim.addr}, survivors...)))
	testenv.PollUntil(t, 5*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, want))
	load := startLoad(t, proxy.addr, testRate)
	testenv.PollUntil(t, 5*time.Second, "the process backend gets traffic", func() bool {
		return successes(t, proxy.addr)[victim.addr] > 0
	})

	start := time.Now()
	victim.Kill(t) // SIGKILL: no deregistration
	testenv.PollUntil(t, 10*time.Second, "killed backend's key expires", func() bool {
		_, ok := etcdEntries(t, cli, prefix)[prefix+victim.addr]
		return !ok
	})
	expired := time.Since(start)
	testenv.PollUntil(t, 5*time.Second, "proxy drops the killed backend", hasSet(t, proxy.addr, survivors))
	dropped := time.Since(start)
	ok, failures := load.Stop()
	t.Logf("SIGKILLed backend: key expired %v after the kill (TTL 1s), out of the proxy's set after %v",
		expired.Round(time.Millisecond), dropped.Round(time.Millisecond))
	checkNoFailures(t, "load across the kill", ok, failures)
	if expired < 300*time.Millisecond {
		t.Errorf("key expired %v after SIGKILL; want about the 1s TTL: was it deregistered?", expired)
	}
}

func TestEtcdRestartUnderLoad(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	registry := "etcd://" + etcd.Endpoint
	cli := newTestEtcdClient(t, etcd)
	prefix := etcdsd.ServicePrefix("stringsvc")
	backends := []*stringsvcRun{
		startStringsvc(t, backendArgs(registry)...),
		startStringsvc(t, backendArgs(registry)...),
		startStringsvc(t, backendArgs(registry)...),
	}
	proxy := startStringsvc(t, proxyArgs(registry)...)
	want := addrs(backends...)
	testenv.PollUntil(t, 5*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, want))
	before := etcdEntries(t, cli, prefix)
	load := startLoad(t, proxy.addr, testRate)

	start := time.Now()
	etcd.Stop(t)
	const stale = `stringsvc_discovery_stale{source="etcd"}`
	testenv.PollUntil(t, 10*time.Second, "proxy reports a stale set", func() bool {
		return scrape(t, proxy.addr)[stale] == 1
	})
	noticed := time.Since(start)
	testenv.PollUntil(t, 10*time.Second, "backends see their leases lost", func() bool {
		for _, b := range backends {
			if scrape(t, b.addr)["stringsvc_registered"] != 0 {
				return false
			}
		}
		return true
	})
	lost := time.Since(start)
	if got := proxySet(t, proxy.addr); !slices.Equal(got, want) {
		t.Errorf("proxy set with etcd down = %v; want the last known %v", got, want)
	}
	failuresWhileDown := len(load.Failures())

	restart := time.Now()
	etcd.Start(t)
	up := time.Since(restart)
	testenv.PollUntil(t, 15*time.Second, "every backend registered again under a new lease", func() bool {
		entries := etcdEntries(t, cli, prefix)
		for key, old := range before {
			if e, ok := entries[key]; !ok || e.lease == old.lease {
				return false
			}
		}
		return true
	})
	reregistered := time.Since(restart)
	testenv.PollUntil(t, 15*time.Second, "the leases from before the restart expire", func() bool {
		for _, e := range before {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ttl, err := cli.TimeToLive(ctx, e.lease)
			cancel()
			if err != nil {
				t.Fatalf("lease %x time to live: %v", e.lease, err)
			}
			if ttl.TTL != -1 {
				return false
			}
		}
		return true
	})
	if got := len(etcdEntries(t, cli, prefix)); got != len(backends) {
		t.Errorf("%d keys in etcd once the old leases expired; want %d", got, len(backends))
	}
	testenv.PollUntil(t, 5*time.Second, "proxy no longer stale", func() bool {
		return scrape(t, proxy.addr)[stale] == 0
	})
	if got := proxySet(t, proxy.addr); !slices.Equal(got, want) {
		t.Errorf("proxy set after the restart = %v; want %v", got, want)
	}
	for _, b := range backends {
		// At least once more after the restart; a keep-alive that a loaded
		// machine delays past the 1s TTL makes it register once more again.
		if got := scrape(t, b.addr)["stringsvc_registrations_total"]; got < 2 {
			t.Errorf("backend %s registered %v times; want at least 2 (start, after the restart)", b.addr, got)
		}
	}
	ok, failures := load.Stop()
	t.Logf("etcd restart: proxy stale after %v, backends' leases lost after %v; etcd down %v, up again "+
		"in %v; all backends re-registered %v after the restart; failures while down: %d",
		noticed.Round(time.Millisecond), lost.Round(time.Millisecond),
		restart.Sub(start).Round(time.Millisecond),
		up.Round(time.Millisecond), reregistered.Round(time.Millisecond), failuresWhileDown)
	checkNoFailures(t, "load across the etcd restart", ok, failures)
}

func portOf(tb testing.TB, addr string) int {
	tb.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestRegistryUnreachableAtStart(t *testing.T) {
	unreachable := fmt.Sprintf("etcd://127.0.0.1:%d", testenv.FreePort(t))

	t.Run("backend exits", func(t *testing.T) {
		var stderr testenv.Buffer
		start := time.Now()
		err := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-registry", unreachable,
			"-registry.timeout", "1s", "-log.flush-interval", "10ms"}, func(string) string { return "" },
			io.Discard, &stderr)
		took := time.Since(start)
		t.Logf("run returned after %v: %v", took.Round(time.Millisecond), err)
		switch {
		case err == nil:
			t.Fatalf("run with an unreachable -registry = nil; want an error\n%s", &stderr)
		case strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "-registry"):
			t.Errorf("error = %q; want one line naming -registry", err)
		case took > 15*time.Second:
			t.Errorf("run gave up after %v; want about -registry.timeout (1s)", took)
		}
	})

	t.Run("proxy waits", func(t *testing.T) {
		p := startStringsvc(t, proxyArgs(unreachable)...)
		if got := getStatus(t, p.addr, "/readyz"); got != http.StatusServiceUnavailable {
			t.Errorf("/readyz = %d; want 503", got)
		}
		testenv.PollUntil(t, 10*time.Second, "proxy reports the registry unreachable", func() bool {
			m := scrape(t, p.addr)
			return m[`stringsvc_discovery_stale{source="etcd"}`] == 1 &&
				m[`stringsvc_discovery_errors_total{source="etcd"}`] > 0
		})
		client := &http.Client{Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		err := sendHello(client, "http://"+p.addr+"/uppercase")
		if err == nil || !strings.HasPrefix(err.Error(), "503 ") {
			t.Errorf("POST /uppercase = %v; want 503", err)
		}
	})
}

func TestDNSSRVDiscovery(t *testing.T) {
	const name = "_http._tcp.stringsvc.test"
	var (
		backends []*stringsvcRun
		ports    []int
	)
	for range 4 {
		b := startStringsvc(t)
		backends = append(backends, b)
		ports = append(ports, portOf(t, b.addr))
	}
	dns := testenv.StartDnsmasq(t, name, ports[:3]...)
	proxy := startStringsvc(t, proxyArgs("dns+srv://"+name, "-dns.server", dns.Addr)...)
	first := addrs(backends[:3]...)
	took := testenv.PollUntil(t, 5*time.Second, "proxy knows the three SRV targets", hasSet(t, proxy.addr, first))
	t.Logf("proxy has the SRV set %v %v after its start", first, took.Round(time.Millisecond))
	const n = 300
	sendN(t, proxy.addr, n)
	checkEvenShare(t, successes(t, proxy.addr), first, n)

	load := startLoad(t, proxy.addr, testRate)
	dns.Stop(t)
	const stale = `stringsvc_discovery_stale{source="dns"}`
	testenv.PollUntil(t, 5*time.Second, "proxy reports a stale set", func() bool {
		return scrape(t, proxy.addr)[stale] == 1
	})
	load.waitMore(t, 100)
	if got := proxySet(t, proxy.addr); !slices.Equal(got, first) {
		t.Errorf("proxy set with DNS down = %v; want the last known %v", got, first)
	}

	dns.Start(t, ports[1:]...) // backend 0 leaves, backend 3 joins
	start := time.Now()
	second := addrs(backends[1:]...)
	testenv.PollUntil(t, 5*time.Second, "proxy follows the changed records", hasSet(t, proxy.addr, second))
	t.Logf("proxy followed the changed SRV records %v after they were served (-dns.refresh 300ms)",
		time.Since(start).Round(time.Millisecond))
	if got := scrape(t, proxy.addr)[stale]; got != 0 {
		t.Errorf("%s = %v after DNS answered again; want 0", stale, got)
	}
	load.waitMore(t, 100)
	ok, failures := load.Stop()
	checkNoFailures(t, "load across the DNS changes", ok, failures)
}

// TestEtcdGRPCRegistration: with -registry.transport grpc the etcd value is
// grpc://<gRPC address>, and a proxy following etcd calls it over gRPC.
func TestEtcdGRPCRegistration(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	registry := "etcd://" + etcd.Endpoint
	backend := startStringsvc(t, append(backendArgs(registry), "-grpc.listen", "127.0.0.1:0",
		"-registry.transport", "grpc")...)
	grpcAddr := backend.stderr.WaitMatch(t, grpcListeningLine, backend.exited, waitTimeout)[1]
	cli := newTestEtcdClient(t, etcd)
	prefix := etcdsd.ServicePrefix("stringsvc")
	testenv.PollUntil(t, 5*time.Second, "the gRPC registration in etcd", func() bool {
		return etcdEntries(t, cli, prefix)[prefix+grpcAddr].value == "grpc://"+grpcAddr
	})
	proxy := startStringsvc(t, proxyArgs(registry)...)
	testenv.PollUntil(t, 5*time.Second, "proxy follows the gRPC instance",
		hasSet(t, proxy.addr, []string{"grpc://" + grpcAddr}))
	sendN(t, proxy.addr, 10)
	if got := successes(t, proxy.addr)["grpc://"+grpcAddr]; got != 10 {
		t.Errorf("successes through grpc://%s = %v; want 10", grpcAddr, got)
	}
}
