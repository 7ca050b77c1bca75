package testenv

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// Dnsmasq is dnsmasq answering SRV records for one name on 127.0.0.1.
type Dnsmasq struct {
	Addr string // 127.0.0.1:port, UDP and TCP
	Name string // the SRV name
	bin  string
	proc *Process
}

// SRVTarget is the host name every SRV record points at; dnsmasq resolves
// it to 127.0.0.1.
const SRVTarget = "backend.stringsvc.test"

// StartDnsmasq serves SRV records for name, one per port, all pointing at
// SRVTarget.
func StartDnsmasq(tb testing.TB, name string, ports ...int) *Dnsmasq {
	tb.Helper()
	d := &Dnsmasq{
		Addr: FreeAddr(tb),
		Name: name,
		bin:  RequireTool(tb, "dnsmasq", "install it with: apt-get install -y dnsmasq-base"),
	}
	d.Start(tb, ports...)
	return d
}

// Resolver returns a resolver that asks this dnsmasq.
func (d *Dnsmasq) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, network, d.Addr)
		},
	}
}

// Start starts dnsmasq with the records for ports and waits until it
// answers with them. dnsmasq rereads only some files on SIGHUP, not
// --srv-host, so changing the records means stopping and starting it.
func (d *Dnsmasq) Start(tb testing.TB, ports ...int) {
	tb.Helper()
	_, port, err := net.SplitHostPort(d.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	args := []string{
		"--no-daemon", "--port=" + port, "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--host-record=" + SRVTarget + ",127.0.0.1",
	}
	for _, p := range ports {
		args = append(args, fmt.Sprintf("--srv-host=%s,%s,%d", d.Name, SRVTarget, p))
	}
	d.proc = StartProcess(tb, "dnsmasq", d.bin, nil, args...)
	resolver := d.Resolver()
	PollUntil(tb, 10*time.Second, "dnsmasq answers with the new records", func() bool {
		d.proc.FailIfExited(tb)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, records, err := resolver.LookupSRV(ctx, "", "", d.Name)
		return err == nil && len(records) == len(ports)
	})
}

// Stop stops dnsmasq and waits for it to exit.
func (d *Dnsmasq) Stop(tb testing.TB) {
	tb.Helper()
	d.proc.Stop(tb)
}
