package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Helpers of the discovery tests: real etcd and dnsmasq processes on
// 127.0.0.1, the program run in-process or as a built binary, a load
// generator, and a /metrics scraper.

// requireTool returns the path of the program name. A missing program skips
// the test, or fails it under CI=true, where .ci/run installs it.
func requireTool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found (%v); install it with: apt-get install -y %s",
		name, err, debianPackage)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}

// freeLocalPort returns a 127.0.0.1 port that was free for both TCP and UDP
// a moment ago.
func freeLocalPort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("find a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, udpErr := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if udpErr == nil {
			if err := pc.Close(); err != nil {
				tb.Fatalf("close UDP probe: %v", err)
			}
		}
		if err := ln.Close(); err != nil {
			tb.Fatalf("close TCP probe: %v", err)
		}
		if udpErr == nil {
			return port
		}
	}
	tb.Fatal("no port free for both TCP and UDP after 20 tries")
	return 0
}

// pollUntil calls cond every 10ms until it is true, failing the test after
// timeout. It returns how long that took.
func pollUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > timeout {
			tb.Fatalf("%s: still not true after %v", what, timeout)
		}
		<-tick.C
	}
	return time.Since(start)
}

// concurrentBuffer is a bytes.Buffer safe for one writer and many readers.
type concurrentBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *concurrentBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *concurrentBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var listenLogLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// waitListening returns the address in the program's "msg=listening" log
// line, failing the test if the program exits first.
func waitListening(tb testing.TB, stderr *concurrentBuffer, exited <-chan struct{},
	exitErr func() error) string {
	tb.Helper()
	var addr string
	pollUntil(tb, 20*time.Second, "stringsvc logs msg=listening", func() bool {
		if m := listenLogLine.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			return true
		}
		select {
		case <-exited:
			tb.Fatalf("stringsvc exited before listening: %v\n%s", exitErr(), stderr)
		default:
		}
		return false
	})
	return addr
}

// stringsvcRun is the program running in-process: run in a goroutine.
type stringsvcRun struct {
	addr   string
	stderr *concurrentBuffer
	cancel context.CancelFunc
	exited chan struct{}
	err    error // set before exited is closed
}

// startStringsvc runs the program with args on 127.0.0.1:0, terse logs and
// no environment, and stops it when the test ends.
func startStringsvc(tb testing.TB, args ...string) *stringsvcRun {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &stringsvcRun{stderr: new(concurrentBuffer), cancel: cancel, exited: make(chan struct{})}
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
	r.addr = waitListening(tb, r.stderr, r.exited, func() error { return r.err })
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

// stringsvcProcess is the built program running as a child process.
type stringsvcProcess struct {
	addr    string
	cmd     *exec.Cmd
	stderr  *concurrentBuffer
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startStringsvcProcess starts bin with args on 127.0.0.1:0 and kills it, by
// PID, when the test ends if it still runs.
func startStringsvcProcess(tb testing.TB, bin string, args ...string) *stringsvcProcess {
	tb.Helper()
	p := &stringsvcProcess{stderr: new(concurrentBuffer), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-listen", "127.0.0.1:0", "-log.flush-interval", "10ms",
		"-log.requests=false"}, args...)...)
	p.cmd.Env = []string{} // no STRINGSVC_* from the test's environment
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		defer close(p.exited)
		p.waitErr = p.cmd.Wait()
	}()
	tb.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		if err := p.cmd.Process.Kill(); err != nil {
			tb.Errorf("kill stringsvc pid %d: %v", p.cmd.Process.Pid, err)
		}
		<-p.exited
	})
	p.addr = waitListening(tb, p.stderr, p.exited, func() error { return p.waitErr })
	return p
}

// etcdServer is a one-member etcd cluster on 127.0.0.1 with its data in a
// temporary directory. It can be stopped and started again on the same
// ports and data.
type etcdServer struct {
	endpoint string // host:port of the client URL
	bin      string
	args     []string
	out      *concurrentBuffer
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
}

// startEtcd starts etcd and waits until it has a leader. Short heartbeat
// and election timeouts let leases as short as 1s be granted as asked
// (etcd's minimum lease TTL is 1.5 election timeouts).
func startEtcd(tb testing.TB) *etcdServer {
	tb.Helper()
	bin := requireTool(tb, "etcd", "etcd-server")
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", freeLocalPort(tb))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", freeLocalPort(tb))
	e := &etcdServer{
		endpoint: strings.TrimPrefix(clientURL, "http://"),
		bin:      bin,
		args: []string{
			"--name", "test", "--data-dir", filepath.Join(tb.TempDir(), "etcd"),
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "test=" + peerURL,
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-level", "warn",
		},
		out: new(concurrentBuffer),
	}
	tb.Cleanup(func() { e.stop(tb) })
	e.start(tb)
	return e
}

func (e *etcdServer) start(tb testing.TB) {
	tb.Helper()
	e.cmd = exec.Command(e.bin, e.args...)
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	if err := e.cmd.Start(); err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	e.exited = exited
	cmd := e.cmd
	go func() {
		defer close(exited)
		e.waitErr = cmd.Wait()
	}()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	pollUntil(tb, 20*time.Second, "etcd answers /health with true", func() bool {
		select {
		case <-exited:
			tb.Fatalf("etcd exited: %v\n%s", e.waitErr, e.out)
		default:
		}
		resp, err := client.Get("http://" + e.endpoint + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == http.StatusOK &&
			strings.Contains(string(body), `"health":"true"`)
	})
}

// stop stops etcd with SIGTERM, by PID, and waits for it to exit.
func (e *etcdServer) stop(tb testing.TB) {
	tb.Helper()
	stopProcess(tb, "etcd", e.cmd, e.exited, e.out)
	e.cmd = nil
}

// stopProcess sends cmd SIGTERM and waits for exited, killing it after 10s.
// A nil cmd has been stopped already.
func stopProcess(tb testing.TB, name string, cmd *exec.Cmd, exited <-chan struct{}, out fmt.Stringer) {
	tb.Helper()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Errorf("SIGTERM %s pid %d: %v", name, cmd.Process.Pid, err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		tb.Errorf("%s pid %d ignored SIGTERM for 10s; killing it\n%s", name, cmd.Process.Pid, out)
		if err := cmd.Process.Kill(); err != nil {
			tb.Errorf("kill %s pid %d: %v", name, cmd.Process.Pid, err)
		}
		<-exited
	}
}

// newTestEtcdClient returns a client of e, closed when the test ends.
func newTestEtcdClient(tb testing.TB, e *etcdServer) *clientv3.Client {
	tb.Helper()
	cli, err := newEtcdClient([]string{e.endpoint})
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

// dnsmasqServer is dnsmasq answering SRV records for name on 127.0.0.1.
type dnsmasqServer struct {
	addr    string // 127.0.0.1:port
	name    string // the SRV name
	bin     string
	out     *concurrentBuffer
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// startDnsmasq serves SRV records for name, one per port, all pointing at
// a target name that resolves to 127.0.0.1.
func startDnsmasq(tb testing.TB, name string, ports ...int) *dnsmasqServer {
	tb.Helper()
	d := &dnsmasqServer{
		addr: fmt.Sprintf("127.0.0.1:%d", freeLocalPort(tb)),
		name: name,
		bin:  requireTool(tb, "dnsmasq", "dnsmasq-base"),
		out:  new(concurrentBuffer),
	}
	tb.Cleanup(func() { d.stop(tb) })
	d.start(tb, ports...)
	return d
}

// start starts dnsmasq with the records for ports and waits until it
// answers with them. dnsmasq rereads only some files on SIGHUP, not
// --srv-host, so changing the records means starting it again.
func (d *dnsmasqServer) start(tb testing.TB, ports ...int) {
	tb.Helper()
	_, port, err := net.SplitHostPort(d.addr)
	if err != nil {
		tb.Fatal(err)
	}
	const target = "backend.stringsvc.test"
	args := []string{
		"--no-daemon", "--port=" + port, "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--host-record=" + target + ",127.0.0.1",
	}
	for _, p := range ports {
		args = append(args, fmt.Sprintf("--srv-host=%s,%s,%d", d.name, target, p))
	}
	d.cmd = exec.Command(d.bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		tb.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan struct{})
	d.exited = exited
	cmd := d.cmd
	go func() {
		defer close(exited)
		d.waitErr = cmd.Wait()
	}()
	resolver := newResolver(d.addr)
	pollUntil(tb, 10*time.Second, "dnsmasq answers with the new records", func() bool {
		select {
		case <-exited:
			tb.Fatalf("dnsmasq exited: %v\n%s", d.waitErr, d.out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, records, err := resolver.LookupSRV(ctx, "", "", d.name)
		return err == nil && len(records) == len(ports)
	})
}

func (d *dnsmasqServer) stop(tb testing.TB) {
	tb.Helper()
	stopProcess(tb, "dnsmasq", d.cmd, d.exited, d.out)
	d.cmd = nil
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
	pollUntil(tb, 30*time.Second, fmt.Sprintf("%d more requests succeed", n), func() bool {
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
	const prefix = `stringsvc_upstream_breaker_state{instance="`
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
	re := regexp.MustCompile(`^stringsvc_upstream_requests_total\{instance="([^"]+)",outcome="success"\}$`)
	got := make(map[string]float64)
	for s, v := range scrape(tb, proxyAddr) {
		if m := re.FindStringSubmatch(s); m != nil {
			got[m[1]] = v
		}
	}
	return got
}
