// Package dnssrv follows the instances a DNS SRV name lists, as ip:port:
// go-kit's sd/dnssrv instancer with a lookup that resolves each target
// through the same resolver (a -dns.server the system resolver may not
// know). It knows go-kit's sd package and nothing of the service.
package dnssrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	kitdnssrv "github.com/go-kit/kit/sd/dnssrv"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
)

// NewInstancer returns an instancer of the SRV name, resolved through r
// every refresh; failed lookups are counted in errs and keep the last set.
func NewInstancer(name string, refresh time.Duration, r *net.Resolver, errs prometheus.Counter,
	logger log.Logger) *kitdnssrv.Instancer {
	return kitdnssrv.NewInstancerDetailed(name, time.NewTicker(refresh), lookupSRVAddrs(r, errs), logger)
}

// lookupTimeout bounds one resolution of a dns+srv:// name, targets included.
const lookupTimeout = 3 * time.Second

// NewResolver returns a resolver asking server (host:port), or the system
// resolver if server is empty.
func NewResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// lookupSRVAddrs returns a go-kit dnssrv.Lookup that resolves the SRV records and
// then each target with the same resolver, so that instances are ip:port:
// the HTTP client dials with the system resolver, which may not know the
// names -dns.server serves. A name that does not exist is an empty set, not
// an error: the server answered that there are no instances. Any other
// failure is an error, on which the instancer keeps the last set.
func lookupSRVAddrs(r *net.Resolver, errs prometheus.Counter) kitdnssrv.Lookup {
	return func(_, _, name string) (string, []*net.SRV, error) {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		addrs, err := ResolveSRV(ctx, r, name)
		if err != nil {
			errs.Inc()
		}
		return "", addrs, err
	}
}

// ResolveSRV resolves the SRV records of name and then their targets, into
// ip:port pairs without duplicates.
func ResolveSRV(ctx context.Context, r *net.Resolver, name string) ([]*net.SRV, error) {
	_, records, err := r.LookupSRV(ctx, "", "", name)
	if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var addrs []*net.SRV
	for _, rec := range records {
		hosts, err := r.LookupHost(ctx, strings.TrimSuffix(rec.Target, "."))
		if err != nil {
			return nil, fmt.Errorf("resolve SRV target %s: %w", rec.Target, err)
		}
		for _, h := range hosts {
			addr := &net.SRV{Target: h, Port: rec.Port}
			if !slices.ContainsFunc(addrs, func(a *net.SRV) bool { return *a == *addr }) {
				addrs = append(addrs, addr)
			}
		}
	}
	return addrs, nil
}
