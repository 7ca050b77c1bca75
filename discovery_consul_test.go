package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"stringsvc/internal/testenv"
)

// Discovery through a real Consul agent in -dev mode (testenv.StartConsul):
// backends register with a health check of GET /readyz every second, and
// proxies follow the passing instances. Modelled on the etcd tests in
// discovery_test.go.

// consulBackendArgs are a test backend's flags: registered with the agent,
// checked every second (Consul's minimum).
func consulBackendArgs(agent string) []string {
	return []string{"-registry", "consul://" + agent, "-registry.check-interval", "1s",
		"-registry.check-timeout", "1s", "-registry.deregister-after", "1m", "-registry.timeout", "10s"}
}

// consulProxyArgs are a test proxy's flags, following the agent, with a
// 3s grace for an agent that comes back empty.
func consulProxyArgs(agent string) []string {
	return proxyArgs("consul://"+agent, "-registry.empty-grace", "3s")
}

// consulStatus returns the instances of stringsvc the agent lists, passing
// or not, each with the worst status of its checks.
func consulStatus(tb testing.TB, agent string) map[string]string {
	tb.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + agent + "/v1/health/service/stringsvc")
	if err != nil {
		tb.Fatalf("GET consul health of stringsvc: %v", err)
	}
	defer resp.Body.Close()
	var entries []struct {
		Service struct {
			Address string
			Port    int
		}
		Checks []struct{ Status string }
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET consul health of stringsvc: %d; want 200", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		tb.Fatalf("GET consul health of stringsvc: decode: %v", err)
	}
	rank := func(status string) int {
		if i := slices.Index([]string{"passing", "warning", "critical"}, status); i >= 0 {
			return i
		}
		return 3 // maintenance, or anything new
	}
	got := make(map[string]string, len(entries))
	for _, e := range entries {
		status := "passing"
		for _, c := range e.Checks {
			if rank(c.Status) > rank(status) {
				status = c.Status
			}
		}
		got[net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))] = status
	}
	return got
}

// consulPassing returns the passing instances of stringsvc, sorted.
func consulPassing(tb testing.TB, agent string) []string {
	tb.Helper()
	var passing []string
	for addr, status := range consulStatus(tb, agent) {
		if status == "passing" {
			passing = append(passing, addr)
		}
	}
	slices.Sort(passing)
	return passing
}

func TestConsulDiscoveryFollowsRegisteredBackends(t *testing.T) {
	agent := testenv.StartConsul(t)
	early := startStringsvc(t, consulProxyArgs(agent.Addr)...)
	if got := getStatus(t, early.addr, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz of a proxy without instances = %d; want 503", got)
	}

	var backends []*stringsvcRun
	for i := range 3 {
		start := time.Now()
		b := startStringsvc(t, consulBackendArgs(agent.Addr)...)
		backends = append(backends, b)
		testenv.PollUntil(t, 10*time.Second, "backend passes its consul check", func() bool {
			return consulStatus(t, agent.Addr)[b.addr] == "passing"
		})
		passing := time.Since(start)
		testenv.PollUntil(t, 5*time.Second, "early proxy knows the new backend", func() bool {
			return slices.Contains(proxySet(t, early.addr), b.addr)
		})
		t.Logf("backend %d (%s): passing in consul %v after start, in the proxy's set after %v",
			i+1, b.addr, passing.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	late := startStringsvc(t, consulProxyArgs(agent.Addr)...)
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
	if got := scrape(t, early.addr)[`stringsvc_discovery_instances{source="consul"}`]; got != 3 {
		t.Errorf(`stringsvc_discovery_instances{source="consul"} = %v; want 3`, got)
	}
}

func TestConsulRollingRestartUnderLoad(t *testing.T) {
	agent := testenv.StartConsul(t)
	backends := []*stringsvcRun{
		startStringsvc(t, consulBackendArgs(agent.Addr)...),
		startStringsvc(t, consulBackendArgs(agent.Addr)...),
		startStringsvc(t, consulBackendArgs(agent.Addr)...),
	}
	proxy := startStringsvc(t, consulProxyArgs(agent.Addr)...)
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
		if status, ok := consulStatus(t, agent.Addr)[old.addr]; ok {
			t.Errorf("stopped backend %s still in consul (%s); want it deregistered", old.addr, status)
		}
		load.waitMore(t, 100)

		start = time.Now()
		backends[i] = startStringsvc(t, consulBackendArgs(agent.Addr)...)
		testenv.PollUntil(t, 10*time.Second, "proxy routes to the replacement", func() bool {
			return successes(t, proxy.addr)[backends[i].addr] > 0
		})
		first := time.Since(start)
		load.waitMore(t, 100)
		t.Logf("backend %d: out of the proxy's set %v after cancel (run returned after %v); "+
			"replacement's first proxied request %v after its start (first check passed); failures so far: %d",
			i+1, removed.Round(time.Millisecond), stopped.Round(time.Millisecond),
			first.Round(time.Millisecond), len(load.Failures()))
	}
	ok, failures := load.Stop()
	checkNoFailures(t, fmt.Sprintf("rolling restart of 3 backends at %d requests/s", testRate), ok, failures)
	if got, want := proxySet(t, proxy.addr), addrs(backends...); !slices.Equal(got, want) {
		t.Errorf("proxy set = %v; want %v", got, want)
	}
}

func TestConsulKilledBackendLeavesWhenCheckFails(t *testing.T) {
	bin := buildBinary(t)
	agent := testenv.StartConsul(t)
	b1 := startStringsvc(t, consulBackendArgs(agent.Addr)...)
	b2 := startStringsvc(t, consulBackendArgs(agent.Addr)...)
	victim := startStringsvcProcess(t, bin, consulBackendArgs(agent.Addr)...)
	proxy := startStringsvc(t, consulProxyArgs(agent.Addr)...)
	survivors := addrs(b1, b2)
	want := slices.Sorted(slices.Values(append([]string{victim.addr}, survivors...)))
	testenv.PollUntil(t, 10*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, want))
	load := startLoad(t, proxy.addr, testRate)
	testenv.PollUntil(t, 5*time.Second, "the process backend gets traffic", func() bool {
		return successes(t, proxy.addr)[victim.addr] > 0
	})

	start := time.Now()
	victim.Kill(t) // SIGKILL: no deregistration
	testenv.PollUntil(t, 10*time.Second, "killed backend's check goes critical", func() bool {
		return consulStatus(t, agent.Addr)[victim.addr] == "critical"
	})
	critical := time.Since(start)
	testenv.PollUntil(t, 5*time.Second, "proxy drops the killed backend", hasSet(t, proxy.addr, survivors))
	dropped := time.Since(start)
	load.waitMore(t, 100)
	ok, failures := load.Stop()
	t.Logf("SIGKILLed backend: critical in consul %v after the kill (check every 1s), "+
		"out of the proxy's set after %v", critical.Round(time.Millisecond), dropped.Round(time.Millisecond))
	checkNoFailures(t, "load across the kill", ok, failures)
	// Still registered: it left the set through its check, and the agent
	// removes it only after -registry.deregister-after (1m).
	if got := consulStatus(t, agent.Addr)[victim.addr]; got != "critical" {
		t.Errorf("killed backend's status in consul = %q; want critical (registered, failing)", got)
	}
}

func TestConsulAgentRestartUnderLoad(t *testing.T) {
	agent := testenv.StartConsul(t)
	backends := []*stringsvcRun{
		startStringsvc(t, consulBackendArgs(agent.Addr)...),
		startStringsvc(t, consulBackendArgs(agent.Addr)...),
		startStringsvc(t, consulBackendArgs(agent.Addr)...),
	}
	proxy := startStringsvc(t, consulProxyArgs(agent.Addr)...)
	want := addrs(backends...)
	testenv.PollUntil(t, 10*time.Second, "proxy knows every backend", hasSet(t, proxy.addr, want))
	load := startLoad(t, proxy.addr, testRate)
	load.waitMore(t, 100)

	start := time.Now()
	agent.Stop(t)
	const stale = `stringsvc_discovery_stale{source="consul"}`
	testenv.PollUntil(t, 10*time.Second, "proxy reports a stale set", func() bool {
		return scrape(t, proxy.addr)[stale] == 1
	})
	noticed := time.Since(start)
	if got := proxySet(t, proxy.addr); !slices.Equal(got, want) {
		t.Errorf("proxy set with the agent down = %v; want the last known %v", got, want)
	}
	load.waitMore(t, 100)
	failuresWhileDown := len(load.Failures())

	restart := time.Now()
	agent.Start(t) // -dev: back with no services at all
	up := time.Since(restart)
	testenv.PollUntil(t, 15*time.Second, "every backend registered again and passing", func() bool {
		return slices.Equal(consulPassing(t, agent.Addr), want)
	})
	reregistered := time.Since(restart)
	testenv.PollUntil(t, 10*time.Second, "proxy no longer stale", func() bool {
		return scrape(t, proxy.addr)[stale] == 0
	})
	testenv.PollUntil(t, 5*time.Second, "proxy follows every backend again", hasSet(t, proxy.addr, want))
	for _, b := range backends {
		m := scrape(t, b.addr)
		if got := m["stringsvc_registrations_total"]; got != 2 {
			t.Errorf("backend %s registered %v times; want 2 (start, after the restart)", b.addr, got)
		}
		if got := m["stringsvc_registered"]; got != 1 {
			t.Errorf("backend %s stringsvc_registered = %v; want 1", b.addr, got)
		}
	}
	load.waitMore(t, 100)
	ok, failures := load.Stop()
	held := scrape(t, proxy.addr)[`stringsvc_discovery_empty_held_total{source="consul"}`]
	t.Logf("consul agent restart: proxy stale after %v; agent down %v, up again in %v; every backend "+
		"passing again %v after the restart; empty sets held by the grace: %v; failures while down: %d",
		noticed.Round(time.Millisecond), restart.Sub(start).Round(time.Millisecond),
		up.Round(time.Millisecond), reregistered.Round(time.Millisecond), held, failuresWhileDown)
	checkNoFailures(t, "load across the agent restart", ok, failures)
}

func TestConsulBadRegistry(t *testing.T) {
	bin := buildBinary(t)
	checkRegistryFailure(t, bin, registryFailureCases{
		unparseable: [][]string{
			{"-registry", "consul://"},
			{"-registry", "consul://h"},
			{"-registry", "consul://127.0.0.1:8500,127.0.0.1:8501"},
			{"-proxy", "consul://127.0.0.1:0"},
		},
		unreachable: fmt.Sprintf("consul://127.0.0.1:%d", testenv.FreePort(t)),
	})
}

// registryFailureCases are the bad -registry and -proxy values of one
// kind of registry.
type registryFailureCases struct {
	unparseable [][]string // flags, each a usage error
	unreachable string     // a registry nothing listens at
}

// checkRegistryFailure runs bin with each unparseable flag (one-line
// error, exit 2) and registered at the unreachable registry with
// -registry.timeout 1s (exit 1 once the timeout is over).
func checkRegistryFailure(t *testing.T, bin string, cases registryFailureCases) {
	t.Helper()
	for _, flags := range cases.unparseable {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			out, code, _ := runBinaryToExit(t, bin, append([]string{"-listen", "127.0.0.1:0"}, flags...)...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "stringsvc: "+flags[0]) {
				t.Errorf("stringsvc %s: exit %d, output %q; want exit 2 and one line "+
					`"stringsvc: %s ..."`, strings.Join(flags, " "), code, out, flags[0])
			}
		})
	}
	t.Run("unreachable at start", func(t *testing.T) {
		out, code, took := runBinaryToExit(t, bin, "-listen", "127.0.0.1:0", "-registry", cases.unreachable,
			"-registry.timeout", "1s", "-log.flush-interval", "10ms")
		t.Logf("exit %d after %v", code, took.Round(time.Millisecond))
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		last := lines[len(lines)-1]
		if code != 1 || !strings.HasPrefix(last, "stringsvc: -registry "+cases.unreachable+": ") ||
			!strings.Contains(last, "no success within 1s") {
			t.Errorf("stringsvc -registry %s (nothing listening): exit %d, last line %q; want exit 1 "+
				"and the error naming -registry and saying no success within 1s\noutput:\n%s",
				cases.unreachable, code, last, out)
		}
		switch {
		case took < time.Second:
			t.Errorf("exited after %v; want after -registry.timeout 1s", took)
		case took > 15*time.Second:
			t.Errorf("exited after %v; want soon after -registry.timeout 1s", took)
		}
	})
}

// runBinaryToExit runs bin with args, without the STRINGSVC_ environment,
// until it exits (within 30s), and returns its output, its exit code and
// how long it ran.
func runBinaryToExit(tb testing.TB, bin string, args ...string) (out string, code int, took time.Duration) {
	tb.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STRINGSVC_") {
			env = append(env, kv)
		}
	}
	start := time.Now()
	p := testenv.StartProcess(tb, "stringsvc", bin, env, args...)
	err := p.Wait(tb, 30*time.Second)
	took = time.Since(start)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		tb.Fatalf("stringsvc %v: %v", args, err)
	}
	return p.Out.String(), code, took
}

// TestConsulGRPCRegistration: with -registry.transport grpc an instance
// registers its gRPC address, the agent checks it with gRPC's health
// protocol, and a proxy following Consul calls it over gRPC.
func TestConsulGRPCRegistration(t *testing.T) {
	agent := testenv.StartConsul(t).Addr
	args := append(consulBackendArgs(agent), "-grpc.listen", "127.0.0.1:0", "-registry.transport", "grpc")
	backend := startStringsvc(t, args...)
	grpcAddr := backend.stderr.WaitMatch(t, grpcListeningLine, backend.exited, waitTimeout)[1]
	testenv.PollUntil(t, 15*time.Second, "the agent passes the gRPC health check", func() bool {
		return consulStatus(t, agent)[grpcAddr] == "passing"
	})
	proxy := startStringsvc(t, consulProxyArgs(agent)...)
	testenv.PollUntil(t, 10*time.Second, "proxy follows the gRPC instance",
		hasSet(t, proxy.addr, []string{"grpc://" + grpcAddr}))
	sendN(t, proxy.addr, 10)
	if got := successes(t, proxy.addr)["grpc://"+grpcAddr]; got != 10 {
		t.Errorf("successes through grpc://%s = %v; want 10", grpcAddr, got)
	}
}
