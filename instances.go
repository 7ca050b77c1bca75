package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// splitInstances parses the -proxy list: comma-separated instances, each
// host:port or http(s)://host[:port][/path]. It returns the instances
// trimmed, in order, and rejects empty entries and duplicates (a duplicate
// would silently get twice the traffic).
func splitInstances(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("empty instance list")
	}
	parts := strings.Split(list, ",")
	seen := make(map[string]bool, len(parts))
	instances := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("instance %d of %d is empty", i+1, len(parts))
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
	default: // http, the only other scheme parseInstance lets through
		port = "80"
	}
	k := *u
	k.Host = net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	return k.String()
}

// parseInstance turns an instance into the URL the proxy POSTs to:
// "host:port" becomes http://host:port/uppercase, a URL without a path gets
// /uppercase, a URL with a path keeps it.
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
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("parse instance %q: scheme %q is not http or https", instance, u.Scheme)
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
	if u.Path == "" || u.Path == "/" {
		u.Path = "/uppercase"
	}
	return u, nil
}
