package consul

import (
	"context"
	"strings"
	"testing"
	"time"

	"stringsvc/internal/sd/instance"
	"stringsvc/internal/testenv"
)

func TestNewRegistrar(t *testing.T) {
	tests := []struct {
		name    string
		give    Service
		wantErr bool
	}{
		{name: "defaults", give: Service{Name: "svc", Addr: "10.0.0.1:8080"}},
		{name: "no port", give: Service{Name: "svc", Addr: "10.0.0.1"}, wantErr: true},
		{name: "bad port", give: Service{Name: "svc", Addr: "10.0.0.1:http"}, wantErr: true},
		{name: "two checks", give: Service{Name: "svc", Addr: "10.0.0.1:8080",
			Check: Check{HTTP: "http://10.0.0.1:8080/readyz", GRPC: "10.0.0.1:9090"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRegistrar(nil, tt.give, instance.RegistrarMetrics{}, newLogger(t))
			if (err != nil) != tt.wantErr {
				t.Errorf("NewRegistrar(%+v) = %v; want error %v", tt.give, err, tt.wantErr)
			}
		})
	}
}

func TestNewRegistrarDefaults(t *testing.T) {
	svc := Service{Name: "svc", Addr: "10.0.0.1:8080"}
	r, err := NewRegistrar(nil, svc, instance.RegistrarMetrics{}, newLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	want := checkDefinition{
		HTTP: "http://10.0.0.1:8080/readyz", Interval: "10s", DeregisterCriticalServiceAfter: "1m0s",
	}
	if r.ID() != "svc-10.0.0.1:8080" || r.reg.Address != "10.0.0.1" || r.reg.Port != 8080 ||
		*r.reg.Check != want {
		t.Errorf("registration = %+v, check %+v; want ID svc-10.0.0.1:8080, "+
			"10.0.0.1 port 8080, check %+v", r.reg, *r.reg.Check, want)
	}
}

// TestRegistrarInstancer registers two instances, then stops them one by
// one: each must appear in and leave the instancer's set.
func TestRegistrarInstancer(t *testing.T) {
	t.Parallel()
	agent := testenv.StartConsul(t)
	logger := newLogger(t)
	client := newClient(t, agent.Addr)
	in := NewInstancer(client, "svc", "", 0, nil, logger)
	t.Cleanup(in.Stop)
	rec := testenv.Record(t, in)
	rec.WaitFor(t)

	a, b := startBackend(t), startBackend(t)
	metrics := registrarMetrics()
	stopA := runRegistrar(t, client, Service{Name: "svc", Addr: a.Addr}, metrics, logger)
	rec.WaitFor(t, a.Addr)
	if got := value(t, metrics.Registered); got != 1 {
		t.Errorf("registered = %v; want 1", got)
	}
	stopB := runRegistrar(t, client, Service{Name: "svc", Addr: b.Addr}, registrarMetrics(), logger)
	both := []string{a.Addr, b.Addr}
	if b.Addr < a.Addr {
		both = []string{b.Addr, a.Addr}
	}
	rec.WaitFor(t, both...)
	stopB()
	rec.WaitFor(t, a.Addr)
	stopA()
	rec.WaitFor(t)
	if got := value(t, metrics.Registered); got != 0 {
		t.Errorf("registered after Run returned = %v; want 0", got)
	}
}

// TestRegistrarDeregisteredByHand removes the service behind the
// registrar's back: it must register it again.
func TestRegistrarDeregisteredByHand(t *testing.T) {
	t.Parallel()
	agent := testenv.StartConsul(t)
	logger := newLogger(t)
	client := newClient(t, agent.Addr)
	a := startBackend(t)
	metrics := registrarMetrics()
	runRegistrar(t, client, Service{Name: "svc", Addr: a.Addr}, metrics, logger)
	testenv.PollUntil(t, 10*time.Second, "registered", func() bool {
		return value(t, metrics.Registrations) == 1
	})
	if err := client.deregister(context.Background(), "svc-"+a.Addr); err != nil {
		t.Fatal(err)
	}
	testenv.PollUntil(t, 10*time.Second, "registered again", func() bool {
		return value(t, metrics.Registrations) == 2
	})
	found, err := client.hasService(context.Background(), "svc-"+a.Addr)
	if err != nil || !found {
		t.Errorf("hasService after registering again = %v, %v; want true, nil", found, err)
	}
}

func TestRegistrarUnreachable(t *testing.T) {
	t.Parallel()
	client := newClient(t, testenv.FreeAddr(t)) // nothing listens there
	svc := Service{Name: "svc", Addr: "127.0.0.1:1001"}
	r, err := NewRegistrar(client, svc, instance.RegistrarMetrics{}, newLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	const firstTimeout = time.Second
	start := time.Now()
	err = r.Run(context.Background(), firstTimeout)
	if err == nil || !strings.Contains(err.Error(), "no success within") {
		t.Fatalf("Run with no agent = %v; want an error saying no success within %v", err, firstTimeout)
	}
	if elapsed := time.Since(start); elapsed < firstTimeout {
		t.Errorf("Run returned after %v; want after firstTimeout %v", elapsed, firstTimeout)
	}
}
