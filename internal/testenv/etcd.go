package testenv

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Etcd is a one-member etcd cluster on 127.0.0.1 with its data in a
// temporary directory. It can be stopped and started again on the same
// ports and data.
type Etcd struct {
	Endpoint string // host:port of the client URL
	bin      string
	args     []string
	proc     *Process
}

// StartEtcd starts etcd and waits until it answers /health. Short heartbeat
// and election timeouts let leases as short as 1s be granted as asked
// (etcd's minimum lease TTL is 1.5 election timeouts).
func StartEtcd(tb testing.TB) *Etcd {
	tb.Helper()
	bin := RequireTool(tb, "etcd", "install it with: apt-get install -y etcd-server")
	clientURL := "http://" + FreeAddr(tb)
	peerURL := "http://" + FreeAddr(tb)
	e := &Etcd{
		Endpoint: strings.TrimPrefix(clientURL, "http://"),
		bin:      bin,
		args: []string{
			"--name", "test", "--data-dir", filepath.Join(tb.TempDir(), "etcd"),
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "test=" + peerURL,
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-level", "warn",
		},
	}
	e.Start(tb)
	return e
}

// Start starts etcd (again) and waits until it is healthy.
func (e *Etcd) Start(tb testing.TB) {
	tb.Helper()
	e.proc = StartProcess(tb, "etcd", e.bin, nil, e.args...)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	PollUntil(tb, 20*time.Second, "etcd answers /health with true", func() bool {
		e.proc.FailIfExited(tb)
		resp, err := client.Get("http://" + e.Endpoint + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == http.StatusOK &&
			strings.Contains(string(body), `"health":"true"`)
	})
}

// Stop stops etcd with SIGTERM and waits for it to exit.
func (e *Etcd) Stop(tb testing.TB) {
	tb.Helper()
	e.proc.Stop(tb)
}

// Out is what etcd printed.
func (e *Etcd) Out() fmt.Stringer { return e.proc.Out }
