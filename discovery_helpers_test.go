package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stringsvc/internal/sd/etcd"
	"stringsvc/internal/testenv"
)

// Helpers of the discovery tests: real etcd and dnsmasq processes on
// 127.0.0.1, the program run in-process or as a built binary, a load
// generator, and a /metrics scraper.

// stringsvcRun is the program running in-process: run in a goroutine.
type stringsvcRun struct {
	addr   string
	stderr *testenv.Buffer
	cancel context.CancelFunc
	exited chan struct{}
	err    error // set before exited is closed
}

// startStringsvc runs the program with args on 127.0.0.1:0, terse logs and
// no environment, and stops it when the test ends.
func startStringsvc(tb testing.TB, args ...string) *stringsvcRun {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &stringsvcRun{stderr: new(testenv.Buffer), cancel: cancel, exited: make(chan struct{})}
	all := append([]string{"-listen", "127.0.0.1:0", "-log.flush-interval", "10ms",
		"-log.requests=false"}, args...)
	go func() {
		defer close(r.exited)
		r.err = run(ctx, all, func(string) string { return "" }, io.Discard, r.stderr)
	}()
	tb.Cleanup(func() {
		if err := r.stop(tb); err != nil {
			tb.Errorf("stringsvc %v: run returned %v\n%s", args, err, r.stderr)
		}
	})
	r.addr = r.stderr.WaitMatch(tb, listeningLine, r.exited, 20*time.Second)[1]
	return r
}

// stop cancels run's context, as SIGTERM would, and returns run's error.
func (r *stringsvcRun) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case <-r.exited:
		return r.err
	case <-time.After(30 * time.Second):
		tb.Fatalf("stringsvc did not stop 30s after cancel\n%s", r.stderr)
		return nil
	}
}

// startStringsvcProcess starts bin with args, terse logs, on 127.0.0.1:0.
func startStringsvcProcess(tb testing.TB, bin string, args ...string) *process {
	tb.Helper()
	return startProcess(tb, bin, append([]string{"-log.flush-interval", "10ms", "-log.requests=false"}, args...)...)
}

// newTestEtcdClient returns a client of e, closed when the test ends.
func newTestEtcdClient(tb testing.TB, e *testenv.Etcd) *clientv3.Client {
	tb.Helper()
	cli, err := etcd.NewClient([]string{e.Endpoint})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() {
		if err := cli.Close(); err != nil {
			tb.Errorf("close etcd client: %v", err)
		}
	})
	return cli
}

// etcdEntries returns the keys under prefix with their values and leases.
func etcdEntries(tb testing.TB, cli *clientv3.Client, prefix string) map[string]etcdEntry {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		tb.Fatalf("etcd get %s: %v", prefix, err)
	}
	entries := make(map[string]etcdEntry, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		entries[string(kv.Key)] = etcdEntry{value: string(kv.Value), lease: clientv3.LeaseID(kv.Lease)}
	}
	return entries
}

type etcdEntry struct {
	value string
	lease clientv3.LeaseID
}

// loadGen sends POST /uppercase at a steady rate and counts the answers
// that are not 200 {"v":"HELLO"}.
type loadGen struct {
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	ok       atomic.Int64
	skipped  atomic.Int64 // ticks with too many requests in flight already
	mu       sync.Mutex
	failures []string
}

// maxLoad bounds a load generator the test forgot to stop.
const maxLoad = 2 * time.Minute

// startLoad sends rps requests per second to addr until Stop, at most 64 at
// once.
func startLoad(tb testing.TB, addr string, rps int) *loadGen {
	l := &loadGen{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	go l.loop(client, "http://"+addr+"/uppercase", time.Second/time.Duration(rps))
	tb.Cleanup(func() { l.Stop() })
	return l
}

func (l *loadGen) loop(client *http.Client, url string, interval time.Duration) {
	defer close(l.done)
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	defer wg.Wait()
	inFlight := make(chan struct{}, 64)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	limit := time.After(maxLoad)
	for {
		select {
		case <-l.stop:
			return
		case <-limit:
			return
		case <-tick.C:
		}
		select {
		case inFlight <- struct{}{}:
		default:
			l.skipped.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inFlight }()
			if err := sendHello(client, url); err != nil {
				l.mu.Lock()
				l.failures = append(l.failures, err.Error())
				l.mu.Unlock()
				return
			}
			l.ok.Add(1)
		}()
	}
}

// Stop stops sending, waits for the answers in flight, and returns the
// number of successes and the failures.
func (l *loadGen) Stop() (ok int64, failures []string) {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), slices.Clone(l.failures)
}

// waitMore waits until n more requests have succeeded, so that each step
// of a test runs under some traffic.
func (l *loadGen) waitMore(tb testing.TB, n int64) {
	tb.Helper()
	target := l.ok.Load() + n
	testenv.PollUntil(tb, 30*time.Second, fmt.Sprintf("%d more requests succeed", n), func() bool {
		return l.ok.Load() >= target
	})
}

// Failures returns the failures so far.
func (l *loadGen) Failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failures)
}

func sendHello(client *http.Client, url string) error {
	resp, err := client.Post(url, "application/json", strings.NewReader(`{"s":"hello"}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"v":"HELLO"`) {
		return fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// sendN sends n requests one after the other and fails the test on the
// first that does not succeed.
func sendN(tb testing.TB, addr string, n int) {
	tb.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for i := range n {
		if err := sendHello(client, "http://"+addr+"/uppercase"); err != nil {
			tb.Fatalf("request %d of %d through %s: %v", i+1, n, addr, err)
		}
	}
}

// getStatus returns the status of GET addr+path.
func getStatus(tb testing.TB, addr, path string) int {
	tb.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		tb.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		tb.Fatalf("GET %s%s: read body: %v", addr, path, err)
	}
	return resp.StatusCode
}

// scrape returns addr's /metrics as series → value, a series written as in
// the text format: name{label="value",...} with labels in name order.
func scrape(tb testing.TB, addr string) map[string]float64 {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		tb.Fatalf("GET %s/metrics: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s/metrics: %d, %v", addr, resp.StatusCode, err)
	}
	series := make(map[string]float64)
	for _, line := range strings.Split(string(body), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			tb.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series
}

// proxySet returns the instances a proxy has an endpoint for, sorted: each
// has a breaker, whose state series exists exactly as long as it does.
func proxySet(tb testing.TB, addr string) []string {
	tb.Helper()
	const prefix = `stringsvc_upstream_breaker_state{upstream="`
	var set []string
	for s := range scrape(tb, addr) {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			set = append(set, strings.TrimSuffix(rest, `"}`))
		}
	}
	slices.Sort(set)
	return set
}

// successes returns how many proxied calls each instance answered.
func successes(tb testing.TB, proxyAddr string) map[string]float64 {
	tb.Helper()
	re := regexp.MustCompile(`^stringsvc_upstream_requests_total\{outcome="success",upstream="([^"]+)"\}$`)
	got := make(map[string]float64)
	for s, v := range scrape(tb, proxyAddr) {
		if m := re.FindStringSubmatch(s); m != nil {
			got[m[1]] = v
		}
	}
	return got
}
