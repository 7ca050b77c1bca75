// Package testenv is the one set of test helpers: real servers started as
// processes on 127.0.0.1 (etcd, dnsmasq, and the registries beside them),
// a locked log buffer, polling with a deadline, free ports. Every process a
// helper starts is stopped, by PID, when the test ends. It is imported by
// tests only and knows nothing of the service.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// server is a failure rather than a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of the program name, looked up on PATH. A
// missing program skips the test with hint (how to install it), or fails it
// under CI=true, where .ci/run installs it.
func RequireTool(tb testing.TB, name, hint string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	Missing(tb, fmt.Sprintf("%s not found (%v); %s", name, err, hint))
	return ""
}

// Missing skips the test with msg, or fails it under CI=true.
func Missing(tb testing.TB, msg string) {
	tb.Helper()
	if InCI() {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// FreePort returns a 127.0.0.1 port that was free for both TCP and UDP a
// moment ago.
func FreePort(tb testing.TB) int {
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

// FreeAddr returns 127.0.0.1:port for a FreePort.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

// PollUntil calls cond every 10ms until it is true, failing the test after
// timeout. It returns how long that took.
func PollUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
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

// Buffer is a bytes.Buffer safe for concurrent writers and readers, for a
// process's output or a logger's lines. The zero value is ready to use.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.b.Write(p)
}

// WaitMatch waits until a complete line matches re and returns its
// submatches. It fails the test if stopped is closed first, or after
// timeout.
func (b *Buffer) WaitMatch(tb testing.TB, re *regexp.Regexp, stopped <-chan struct{}, timeout time.Duration) []string {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		text := b.b.String()
		lines := text[:strings.LastIndexByte(text, '\n')+1] // a partial line may still grow
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		if m := re.FindStringSubmatch(lines); m != nil {
			return m
		}
		select {
		case <-changed:
		case <-stopped:
			tb.Fatalf("stopped before writing a line matching %s; output:\n%s", re, text)
		case <-deadline:
			tb.Fatalf("no line matching %s after %v; output:\n%s", re, timeout, text)
		}
	}
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Process is a child process a test started. Its stdout and stderr go to
// Out.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Out  *Buffer

	exited  chan struct{}
	waitErr error // set before exited is closed
}

// StartProcess starts bin with args and env (nil: the test's environment)
// and, when the test ends, stops it if it still runs: SIGTERM, then SIGKILL
// after 10s, by PID.
func StartProcess(tb testing.TB, name, bin string, env []string, args ...string) *Process {
	tb.Helper()
	p := &Process{Name: name, Out: new(Buffer), exited: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = env
	p.Cmd.Stdout, p.Cmd.Stderr = p.Out, p.Out
	if err := p.Cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		defer close(p.exited)
		p.waitErr = p.Cmd.Wait()
	}()
	tb.Cleanup(func() { p.Stop(tb) })
	return p
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Err is the process's exit error (nil for exit 0); valid once Exited.
func (p *Process) Err() error {
	<-p.exited
	return p.waitErr
}

// FailIfExited fails the test with the process's output if it has exited:
// for use inside a PollUntil condition while waiting for it to be ready.
func (p *Process) FailIfExited(tb testing.TB) {
	tb.Helper()
	if !p.Running() {
		tb.Fatalf("%s exited: %v\n%s", p.Name, p.waitErr, p.Out)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(tb testing.TB, sig os.Signal) {
	tb.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal %v to %s pid %d: %v", sig, p.Name, p.Cmd.Process.Pid, err)
	}
}

// Wait waits up to timeout for the process to exit and returns its error.
func (p *Process) Wait(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(timeout):
		tb.Fatalf("%s pid %d still runs after %v\n%s", p.Name, p.Cmd.Process.Pid, timeout, p.Out)
		return nil
	}
}

// Stop sends SIGTERM and waits for the process to exit, killing it after
// 10s. Stopping a process that has exited does nothing.
func (p *Process) Stop(tb testing.TB) {
	tb.Helper()
	if !p.Running() {
		return
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && p.Running() {
		tb.Errorf("SIGTERM %s pid %d: %v", p.Name, p.Cmd.Process.Pid, err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		tb.Errorf("%s pid %d ignored SIGTERM for 10s; killing it\n%s", p.Name, p.Cmd.Process.Pid, p.Out)
		p.Kill(tb)
	}
}

// Kill sends SIGKILL (SIGCONT first, in case it is stopped) and waits for
// the process to exit.
func (p *Process) Kill(tb testing.TB) {
	tb.Helper()
	if !p.Running() {
		return
	}
	resume(p.Cmd.Process) // a stopped process dies either way
	if err := p.Cmd.Process.Kill(); err != nil && p.Running() {
		tb.Errorf("kill %s pid %d: %v", p.Name, p.Cmd.Process.Pid, err)
	}
	<-p.exited
}
