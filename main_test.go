package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"stringsvc/internal/testenv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantMsg string // part of the one-line message
	}{
		{name: "unknown flag", args: []string{"-nope"}, wantMsg: "-nope"},
		{name: "bad duration", args: []string{"-proxy.timeout", "soon"}, wantMsg: "-proxy.timeout"},
		{name: "bad number", args: []string{"-proxy.breaker.failures", "many"}, wantMsg: "-proxy.breaker.failures"},
		{name: "stray argument", args: []string{"extra"}, wantMsg: `"extra"`},
		{name: "bad log format", args: []string{"-log.format", "xml"}, wantMsg: "-log.format"},
		{name: "bad balancer", args: []string{"-proxy.balancer", "fastest"}, wantMsg: "-proxy.balancer"},
		{name: "zero body limit", args: []string{"-http.max-body-bytes", "0"}, wantMsg: "-http.max-body-bytes"},
		{name: "proxy empty entry", args: []string{"-proxy", "127.0.0.1:1,,127.0.0.1:2"}, wantMsg: "-proxy"},
		{name: "proxy without port", args: []string{"-proxy", "host"}, wantMsg: "-proxy"},
		{name: "proxy other scheme", args: []string{"-proxy", "ftp://h:1"}, wantMsg: "-proxy"},
		{name: "proxy bad port", args: []string{"-proxy", "h:99999"}, wantMsg: "-proxy"},
		{name: "proxy duplicate", args: []string{"-proxy", "127.0.0.1:1, 127.0.0.1:1"}, wantMsg: "-proxy"},
		{name: "proxy query", args: []string{"-proxy", "http://h:1/uppercase?x=1"}, wantMsg: "-proxy"},
		{name: "proxy zero attempts", args: []string{"-proxy", "127.0.0.1:1", "-proxy.attempts", "0"}, wantMsg: "-proxy.attempts"},
		{name: "proxy burst below 1", args: []string{"-proxy", "127.0.0.1:1", "-proxy.burst", "0"}, wantMsg: "-proxy.burst"},
		{name: "proxy ratio above 1", args: []string{"-proxy", "127.0.0.1:1", "-proxy.breaker.ratio", "1.5"},
			wantMsg: "-proxy.breaker.ratio"},
		{name: "env not a number", env: map[string]string{"STRINGSVC_PROXY_QPS": "abc"}, wantMsg: "STRINGSVC_PROXY_QPS"},
		{name: "env not a whole number", env: map[string]string{"STRINGSVC_PROXY_BREAKER_FAILURES": "x"},
			wantMsg: "STRINGSVC_PROXY_BREAKER_FAILURES"},
		{name: "env bad proxy list", env: map[string]string{"STRINGSVC_PROXY": "127.0.0.1:1,,127.0.0.1:2"}, wantMsg: "-proxy"},
		{name: "env negative qps", args: []string{"-proxy", "127.0.0.1:1"}, env: map[string]string{"STRINGSVC_PROXY_QPS": "-1"},
			wantMsg: "-proxy.qps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Should a case pass validation, run serves on a free port and
			// returns at once: ctx is already done.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			args := append([]string{"-listen", "127.0.0.1:0"}, tt.args...)
			var stdout, stderr bytes.Buffer
			err := run(ctx, args, func(k string) string { return tt.env[k] }, &stdout, &stderr)
			if !errors.As(err, &usageError{}) {
				t.Fatalf("run(%q, env %v) = %v; want a usageError", args, tt.env, err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("run(%q, env %v) = %q; want one line mentioning %q", args, tt.env, msg, tt.wantMsg)
			}
			if stdout.Len() != 0 || stderr.Len() != 0 {
				t.Errorf("run(%q, env %v) wrote stdout %q, stderr %q; want nothing (main prints the error)",
					args, tt.env, &stdout, &stderr)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("run(-h) = %v; want nil", err)
	}
	for _, want := range []string{"Usage: stringsvc", "-listen", "-proxy.qps", "STRINGSVC_PROXY_ATTEMPT_TIMEOUT"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("run(-h) stdout = %q; want it to mention %q", &stdout, want)
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("run(-h) stderr = %q; want nothing", &stderr)
	}
}

func TestRunVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("run(-version) = %v; want nil", err)
	}
	if got := stdout.String(); !strings.HasPrefix(got, "stringsvc") || strings.Count(got, "\n") != 1 {
		t.Errorf("run(-version) stdout = %q; want one line starting with stringsvc", got)
	}
}

func TestRunListenAddressInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { closeListener(t, ln) })
	addr := ln.Addr().String()
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "flag", args: []string{"-listen", addr}},
		{name: "env", env: map[string]string{"STRINGSVC_LISTEN": addr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr testenv.Buffer
			err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr)
			if err == nil || errors.As(err, &usageError{}) || !strings.Contains(err.Error(), addr) {
				t.Errorf("run(%q, env %v) = %v; want an error about %s, not a usageError", tt.args, tt.env, err, addr)
			}
		})
	}
}

// TestRunReleasesListenerOnError checks that run, failing after it bound
// -listen, unbinds it: a second run in the same process must be able to.
func TestRunReleasesListenerOnError(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { closeListener(t, busy) })
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := free.Addr().String()
	closeListener(t, free)

	var stdout, stderr testenv.Buffer
	args := []string{"-listen", addr, "-debug.listen", busy.Addr().String()}
	err = run(context.Background(), args, noEnv, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("run(%q) = %v; want an error about -debug.listen %s", args, err, busy.Addr())
	}
	again, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after run returned, listen on its -listen %s: %v; want the address free", addr, err)
	}
	closeListener(t, again)
}

func TestRunServesUntilCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testenv.Buffer
	runErr := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		runErr <- run(ctx, []string{"-listen", "127.0.0.1:0", "-log.flush-interval", "10ms"}, noEnv, &stdout, &stderr)
		close(stopped)
	}()
	addr := stderr.WaitMatch(t, listeningLine, stopped, waitTimeout)[1]
	client := &http.Client{Timeout: waitTimeout}
	waitHealthy(t, client, addr)
	resp, body := send(t, client, http.MethodPost, "http://"+addr+"/uppercase", `{"s":"hello"}`)
	if resp.StatusCode != http.StatusOK || body != "{\"v\":\"HELLO\"}\n" {
		t.Errorf("POST /uppercase = %d %q; want 200 {\"v\":\"HELLO\"}", resp.StatusCode, body)
	}
	client.CloseIdleConnections()

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("run after cancel = %v; want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("run still running %v after cancel", waitTimeout)
	}
	// Close wrote everything out before run returned.
	for _, want := range []string{"method=uppercase input=hello output=HELLO", `msg="shutting down"`, "msg=stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log = %q; want a line with %q", stderr.String(), want)
		}
	}
}

// TestProgram runs the built binary: three backends and a proxy as
// processes, then a graceful shutdown with a request in flight.
func TestProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	t.Parallel()
	bin := buildBinary(t)
	client := &http.Client{Timeout: waitTimeout}
	t.Cleanup(client.CloseIdleConnections)

	var backends []string
	for range 3 {
		backends = append(backends, startProcess(t, bin).addr)
	}
	proxy := startProcess(t, bin, "-proxy", strings.Join(backends, ","), "-proxy.balancer", "roundrobin",
		"-proxy.attempt-timeout", "2s", "-proxy.timeout", "5s")
	for _, addr := range append(backends, proxy.addr) {
		waitHealthy(t, client, addr)
	}
	if resp, body := send(t, client, http.MethodGet, "http://"+proxy.addr+"/readyz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("proxy GET /readyz = %d %s; want 200", resp.StatusCode, body)
	}

	const perBackend = 2
	for i := range perBackend * len(backends) {
		s := fmt.Sprintf("hello %d é", i)
		resp, body := send(t, client, http.MethodPost, "http://"+proxy.addr+"/uppercase", fmt.Sprintf(`{"s":%q}`, s))
		if want := fmt.Sprintf("{\"v\":%q}\n", strings.ToUpper(s)); resp.StatusCode != http.StatusOK || body != want {
			t.Errorf("proxy POST /uppercase %q = %d %q; want 200 %q", s, resp.StatusCode, body, want)
		}
	}
	resp, body := send(t, client, http.MethodPost, "http://"+proxy.addr+"/uppercase", `{"s":""}`)
	if want := "{\"v\":\"\",\"err\":\"empty string\"}\n"; resp.StatusCode != http.StatusBadRequest || body != want {
		t.Errorf("proxy POST /uppercase \"\" = %d %q; want 400 %q", resp.StatusCode, body, want)
	}
	resp, body = send(t, client, http.MethodPost, "http://"+proxy.addr+"/count", `{"s":"héllo"}`)
	if resp.StatusCode != http.StatusOK || body != "{\"v\":5}\n" {
		t.Errorf("proxy POST /count = %d %q; want 200 {\"v\":5}", resp.StatusCode, body)
	}

	resp, metrics := send(t, client, http.MethodGet, "http://"+proxy.addr+"/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("proxy GET /metrics = %d; want 200", resp.StatusCode)
	}
	for _, addr := range backends {
		want := fmt.Sprintf(`stringsvc_upstream_requests_total{outcome="success",upstream=%q} %d`, addr, perBackend)
		if !strings.Contains(metrics, want) {
			t.Errorf("proxy /metrics has no line %q", want)
		}
	}

	t.Run("GOGC", func(t *testing.T) {
		tests := []struct {
			env  []string
			want string
		}{
			{nil, "go_gc_gogc_percent 400\n"}, // defaultGCPercent
			{[]string{"GOGC=150"}, "go_gc_gogc_percent 150\n"},
		}
		for _, tt := range tests {
			p := startProcessEnv(t, bin, tt.env)
			waitHealthy(t, client, p.addr)
			if _, metrics := send(t, client, http.MethodGet, "http://"+p.addr+"/metrics", ""); !strings.Contains(metrics, tt.want) {
				t.Errorf("with %q, /metrics has no line %q", tt.env, strings.TrimSpace(tt.want))
			}
		}
	})

	t.Run("SIGTERM drains in-flight request", func(t *testing.T) {
		hb := newBlockingBackend(t)
		proxy := startProcess(t, bin, "-proxy", hb.instance, "-proxy.attempt-timeout", "10s", "-proxy.timeout", "20s")
		waitHealthy(t, client, proxy.addr)

		type result struct {
			status int
			body   string
			err    error
		}
		answer := make(chan result, 1)
		go func() {
			resp, err := client.Post("http://"+proxy.addr+"/uppercase", "application/json", strings.NewReader(`{"s":"hello"}`))
			if err != nil {
				answer <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			answer <- result{resp.StatusCode, string(b), err}
		}()
		receive(t, hb.received, "request at the blocking backend")
		proxy.Signal(t, syscall.SIGTERM)
		proxy.Out.WaitMatch(t, regexp.MustCompile(`msg="shutting down"`), proxy.Exited(), waitTimeout)
		hb.release()

		select {
		case r := <-answer:
			if r.err != nil || r.status != http.StatusOK || r.body != "{\"v\":\"HELLO\"}\n" {
				t.Errorf("in-flight POST /uppercase = %d %q, %v; want 200 {\"v\":\"HELLO\"}", r.status, r.body, r.err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("in-flight request not answered %v after the backend was released", waitTimeout)
		}
		select {
		case <-proxy.Exited():
			if err := proxy.Err(); err != nil {
				t.Errorf("proxy exited with %v after SIGTERM; want status 0", err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("proxy still running %v after SIGTERM", waitTimeout)
		}
		if !strings.Contains(proxy.Out.String(), "msg=stopped") {
			t.Errorf("proxy log has no msg=stopped line:\n%s", proxy.Out.String())
		}
	})
}

func noEnv(string) string { return "" }

func closeListener(tb testing.TB, ln net.Listener) {
	tb.Helper()
	if err := ln.Close(); err != nil {
		tb.Errorf("close listener %s: %v", ln.Addr(), err)
	}
}

// listeningLine is the log line run writes once it has bound -listen.
var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// waitHealthy polls GET /healthz at addr until it answers 200.
func waitHealthy(tb testing.TB, client *http.Client, addr string) {
	tb.Helper()
	waitFor(tb, "GET http://"+addr+"/healthz answers 200", func() bool {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return false
		}
		return resp.StatusCode == http.StatusOK
	})
}

// buildBinary builds the program into a temporary directory.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "stringsvc")
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is the program running as a child process, on 127.0.0.1:0.
type process struct {
	*testenv.Process
	addr string // bound HTTP address, from the log
}

// startProcess starts bin with args on a free loopback port and waits for
// its listening line. The process is stopped when the test ends, if it is
// still running.
func startProcess(tb testing.TB, bin string, args ...string) *process {
	tb.Helper()
	return startProcessEnv(tb, bin, nil, args...)
}

// startProcessEnv is startProcess with env added to the environment.
func startProcessEnv(tb testing.TB, bin string, env []string, args ...string) *process {
	tb.Helper()
	var all []string
	for _, kv := range os.Environ() {
		// The test decides the configuration, and the collector's target.
		if !strings.HasPrefix(kv, "STRINGSVC_") && !strings.HasPrefix(kv, "GOGC=") {
			all = append(all, kv)
		}
	}
	p := &process{Process: testenv.StartProcess(tb, "stringsvc", bin, append(all, env...),
		append([]string{"-listen", "127.0.0.1:0"}, args...)...)}
	p.addr = p.Out.WaitMatch(tb, listeningLine, p.Exited(), waitTimeout)[1]
	return p
}

// blockingBackend is our handler stack behind a gate: each request is
// reported on received, then waits for release before it is served.
type blockingBackend struct {
	instance string
	received chan struct{}
	release  func()
}

func newBlockingBackend(tb testing.TB) *blockingBackend {
	tb.Helper()
	h := newServiceHandler(func() bool { return true }, 1<<20)
	gate := make(chan struct{})
	var once sync.Once
	b := &blockingBackend{received: make(chan struct{}, 10), release: func() { once.Do(func() { close(gate) }) }}
	blocking := startServer(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.received <- struct{}{}
		<-gate
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(b.release) // before blocking.Close, which waits for the handlers
	b.instance = strings.TrimPrefix(blocking.URL, "http://")
	return b
}
