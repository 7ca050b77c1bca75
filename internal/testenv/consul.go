package testenv

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ConsulVersion is the Consul that scripts/build-consul.sh builds: the
// last line under MPL-2.0 (1.15 and later are not open source).
const ConsulVersion = "1.14.11"

// buildConsulHint says how to get the binary: there is no Debian package.
const buildConsulHint = "run scripts/build-consul.sh (builds it once, in minutes)"

// Consul is a Consul agent in -dev mode (a server holding everything in
// memory) on 127.0.0.1, every port its own. Stopping it loses its state;
// Start starts it again on the same ports, empty.
type Consul struct {
	Addr string   // 127.0.0.1:port of the HTTP API
	Proc *Process // the agent running now
	bin  string
	args []string
}

// ConsulBinary returns the path of the consul binary: on PATH, or where
// scripts/build-consul.sh puts it (CONSUL_CACHE_DIR, by default
// $XDG_CACHE_HOME/stringsvc/consul-<version>, ~/.cache without
// XDG_CACHE_HOME). If there is none it skips the test, or fails it under
// CI=true.
func ConsulBinary(tb testing.TB) string {
	tb.Helper()
	if path, err := exec.LookPath("consul"); err == nil {
		return path
	}
	dir := os.Getenv("CONSUL_CACHE_DIR")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				Missing(tb, fmt.Sprintf("consul not on PATH and no home directory (%v); %s",
					err, buildConsulHint))
				return ""
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "stringsvc", "consul-"+ConsulVersion)
	}
	path := filepath.Join(dir, "consul")
	if _, err := os.Stat(path); err != nil {
		Missing(tb, fmt.Sprintf("consul not on PATH nor at %s (%v); %s", path, err, buildConsulHint))
	}
	return path
}

// StartConsul starts a -dev agent, with extra arguments if any (such as
// -hcl fragments), and waits until it has a leader.
func StartConsul(tb testing.TB, extra ...string) *Consul {
	tb.Helper()
	c := &Consul{bin: ConsulBinary(tb), Addr: FreeAddr(tb)}
	_, httpPort, _ := strings.Cut(c.Addr, ":")
	port := func() string { return strconv.Itoa(FreePort(tb)) }
	c.args = []string{
		"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", "test", "-log-level", "warn", "-disable-host-node-id",
		"-http-port", httpPort, "-https-port", "-1", "-dns-port", port(),
		"-grpc-port", port(), "-grpc-tls-port", port(),
		"-serf-lan-port", port(), "-serf-wan-port", port(), "-server-port", port(),
		// No -data-dir: with one, the agent would keep its services
		// across a restart, and a -dev agent is to lose everything.
	}
	c.args = append(c.args, extra...)
	c.Start(tb)
	return c
}

// Start starts the agent (again, with no state) and waits until it has a
// leader.
func (c *Consul) Start(tb testing.TB) {
	tb.Helper()
	c.Proc = StartProcess(tb, "consul", c.bin, nil, c.args...)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	PollUntil(tb, 30*time.Second, "consul answers /v1/status/leader with a leader", func() bool {
		c.Proc.FailIfExited(tb)
		resp, err := client.Get("http://" + c.Addr + "/v1/status/leader")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		leader := strings.Trim(strings.TrimSpace(string(body)), `"`)
		return err == nil && resp.StatusCode == http.StatusOK && leader != ""
	})
}

// Stop stops the agent with SIGTERM and waits for it to exit.
func (c *Consul) Stop(tb testing.TB) {
	tb.Helper()
	c.Proc.Stop(tb)
}

// Out is what the agent printed.
func (c *Consul) Out() fmt.Stringer { return c.Proc.Out }
