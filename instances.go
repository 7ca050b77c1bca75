package main

// What -proxy and -registry name: instance lists, registries, DNS names.

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// splitInstances parses the -proxy list: comma-separated instances, each
// host:port, http(s)://host[:port][/path] or grpc://host:port. A scheme on
// the first entry applies to every entry that has none of its own
// (grpc://a,b is two gRPC instances). It returns the instances trimmed,
// each with the scheme it has, in order, and rejects empty entries and
// duplicates (a duplicate would silently get twice the traffic).
func splitInstances(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("empty instance list")
	}
	parts := strings.Split(list, ",")
	scheme, _, hasScheme := strings.Cut(strings.TrimSpace(parts[0]), "://")
	seen := make(map[string]bool, len(parts))
	instances := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("instance %d of %d is empty", i+1, len(parts))
		}
		if hasScheme && !strings.Contains(p, "://") {
			if _, _, err := net.SplitHostPort(p); err != nil {
				return nil, fmt.Errorf("parse instance %q: want host:port", p)
			}
			p = scheme + "://" + p
		}
		u, err := parseInstance(p)
		if err != nil {
			return nil, err
		}
		key := instanceKey(u)
		if seen[key] {
			return nil, fmt.Errorf("instance %q is listed twice", p)
		}
		seen[key] = true
		instances = append(instances, p)
	}
	return instances, nil
}

// instanceKey is what two spellings of one instance have in common: host
// names are case-insensitive, and a missing port is the scheme's.
func instanceKey(u *url.URL) string {
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	case u.Scheme == "grpc": // parseInstance requires one
	default: // http, the only other scheme parseInstance lets through
		port = "80"
	}
	k := *u
	k.Host = net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	return k.String()
}

// parseInstance turns an instance into the URL the proxy calls:
// "host:port" becomes http://host:port/uppercase, an HTTP URL without a path
// gets /uppercase, one with a path keeps it; grpc://host:port is a gRPC
// instance, port required, no path.
func parseInstance(instance string) (*url.URL, error) {
	raw := instance
	if !strings.Contains(raw, "://") {
		if _, _, err := net.SplitHostPort(raw); err != nil {
			return nil, fmt.Errorf("parse instance %q: want host:port or http://host:port[/path]", instance)
		}
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse instance %q: %w", instance, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "grpc":
		return nil, fmt.Errorf("parse instance %q: scheme %q is not http, https or grpc", instance, u.Scheme)
	case u.Hostname() == "":
		return nil, fmt.Errorf("parse instance %q: no host", instance)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("parse instance %q: want host:port or http://host:port[/path]", instance)
	}
	if port := u.Port(); port != "" {
		if _, err := net.LookupPort("tcp", port); err != nil || strings.HasPrefix(port, "0") {
			return nil, fmt.Errorf("parse instance %q: bad port %q", instance, port)
		}
	}
	if u.Scheme == "grpc" {
		if u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("parse instance %q: want grpc://host:port", instance)
		}
		u.Path = ""
		return u, nil
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/uppercase"
	}
	return u, nil
}

// proxyTarget is what -proxy names: a fixed instance list, a registry whose
// registered instances to follow, or a DNS SRV name to resolve. Exactly one
// is set, or none when the service serves locally.
type proxyTarget struct {
	instances []string     // a fixed list
	registry  registryAddr // a registry
	srvName   string       // a DNS SRV name
}

// parseProxyTarget dispatches -proxy on its scheme: a registry, dns+srv://, or
// else a fixed list.
func parseProxyTarget(s string) (proxyTarget, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case ok && registryKinds[scheme]:
		r, err := parseRegistry(s)
		return proxyTarget{registry: r}, err
	case ok && scheme == "dns+srv":
		name, err := parseSRVName(rest)
		return proxyTarget{srvName: name}, err
	case ok && scheme != "http" && scheme != "https" && scheme != "grpc":
		return proxyTarget{}, fmt.Errorf("unknown scheme %q: want host:port[,...], http(s)://host:port[,...], grpc://host:port[,...], "+
			"etcd://host:port[,...], consul://host:port, zk://host:port[,...] or dns+srv://name", scheme)
	}
	instances, err := splitInstances(s)
	return proxyTarget{instances: instances}, err
}

// registryAddr is a registry: its kind ("etcd", "consul" or "zk") and its
// endpoints (host:port each; one, the local agent, for Consul).
type registryAddr struct {
	kind      string
	endpoints []string
}

// String is the registry as -registry and -proxy spell it.
func (r registryAddr) String() string {
	return r.kind + "://" + strings.Join(r.endpoints, ",")
}

// registryKinds are the registries -registry and -proxy know.
var registryKinds = map[string]bool{"etcd": true, "consul": true, "zk": true}

// parseRegistry parses etcd://host:port[,host:port...], consul://host:port
// or zk://host:port[,host:port...].
func parseRegistry(s string) (registryAddr, error) {
	kind, rest, ok := strings.Cut(s, "://")
	if !ok || !registryKinds[kind] {
		return registryAddr{}, fmt.Errorf("%q: want etcd://host:port[,host:port...], consul://host:port "+
			"or zk://host:port[,host:port...]", s)
	}
	endpoints, err := parseEndpoints(kind, rest)
	if err == nil && kind == "consul" && len(endpoints) != 1 {
		err = fmt.Errorf("%q: want one Consul agent, consul://host:port", s)
	}
	return registryAddr{kind: kind, endpoints: endpoints}, err
}

// splitList splits a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// parseEndpoints parses the part after scheme://: comma-separated
// host:port, each of which may also carry its own scheme:// prefix.
func parseEndpoints(scheme, list string) ([]string, error) {
	var endpoints []string
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimPrefix(strings.TrimSpace(e), scheme+"://")
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" || !validPort(port) {
			form := scheme + "://host:port[,host:port...]"
			if scheme == "consul" {
				form = "consul://host:port, the local agent"
			}
			return nil, fmt.Errorf("%s endpoint %q: want host:port (%s)", scheme, e, form)
		}
		endpoints = append(endpoints, e)
	}
	return endpoints, nil
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 1<<16
}

// parseSRVName checks the part after dns+srv://, such as
// _http._tcp.stringsvc.default.svc.cluster.local.
func parseSRVName(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/:,? ") {
		return "", fmt.Errorf("dns+srv name %q: want dns+srv://_service._proto.domain, no port or path", name)
	}
	return name, nil
}

// parseDNSServer returns -dns.server as host:port, port 53 if it has none.
func parseDNSServer(s string) (string, error) {
	if host, port, err := net.SplitHostPort(s); err == nil {
		if host == "" || !validPort(port) {
			return "", fmt.Errorf("-dns.server %q: want host[:port]", s)
		}
		return s, nil
	}
	if strings.ContainsAny(s, "/:, ") {
		return "", fmt.Errorf("-dns.server %q: want host[:port]", s)
	}
	return net.JoinHostPort(s, "53"), nil
}
