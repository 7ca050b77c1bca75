// Package consul is service discovery through the local Consul agent: a
// client of the agent's HTTP API, an sd.Instancer that follows the passing
// instances of a service with blocking queries, and a registrar that keeps
// this instance registered with a health check while the process runs. It
// extends go-kit's sd/consul and knows go-kit's sd and Consul's API;
// nothing of the service, its transports or its flags.
//
// The client is a few lines over net/http rather than
// github.com/hashicorp/consul/api: the package needs four endpoints, and
// that module brings a dozen others (hclog, serf, go-rootcerts…) for them.
// Written here, every call has a deadline that covers a blocking query's
// wait, which the api client leaves to its caller.
package consul

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// callTimeout bounds one call to the agent, on top of a blocking query's
// wait.
const callTimeout = 2 * time.Second

// Client is a client of a Consul agent's HTTP API.
type Client struct {
	base  string // http://host:port
	token string
	http  *http.Client
}

// NewClient returns a client of the agent at addr (host:port, or an http
// or https URL) that sends token as the ACL token; an empty token sends
// none, and the agent uses its default.
func NewClient(addr, token string) (*Client, error) {
	base := addr
	if !strings.Contains(addr, "://") {
		base = "http://" + addr
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("consul agent address %q is not host:port or an http URL", addr)
	}
	return &Client{
		base:  strings.TrimSuffix(base, "/"),
		token: token,
		// Its own transport, so that a test's agents do not share idle
		// connections with anything else; no client timeout, as each
		// call has its own deadline.
		http: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}, nil
}

// Close closes the client's idle connections to the agent. Calls made
// after it open new ones.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// registration is the body of PUT /v1/agent/service/register.
type registration struct {
	ID      string
	Name    string
	Tags    []string `json:",omitempty"`
	Address string
	Port    int
	Meta    map[string]string `json:",omitempty"`
	Check   *checkDefinition  `json:",omitempty"`
}

// checkDefinition is a check of a registration. Consul reads durations as
// Go's time.ParseDuration does.
type checkDefinition struct {
	HTTP                           string `json:",omitempty"`
	GRPC                           string `json:",omitempty"`
	Interval                       string
	Timeout                        string `json:",omitempty"`
	DeregisterCriticalServiceAfter string `json:",omitempty"`
}

// register registers a service with the agent, replacing one of the same
// ID.
func (c *Client) register(ctx context.Context, reg registration) error {
	body, err := json.Marshal(reg)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodPut, "/v1/agent/service/register", nil, body, nil)
	return err
}

// deregister removes a service from the agent.
func (c *Client) deregister(ctx context.Context, id string) error {
	path := "/v1/agent/service/deregister/" + url.PathEscape(id)
	_, err := c.do(ctx, http.MethodPut, path, nil, nil, nil)
	return err
}

// hasService reports whether the agent has the service id.
func (c *Client) hasService(ctx context.Context, id string) (bool, error) {
	_, err := c.do(ctx, http.MethodGet, "/v1/agent/service/"+url.PathEscape(id), nil, nil, nil)
	var statusErr *statusError
	if errors.As(err, &statusErr) && statusErr.Code == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// healthEntry is one element of GET /v1/health/service/:service.
type healthEntry struct {
	Node    struct{ Address string }
	Service struct {
		Address string
		Port    int
		Meta    map[string]string
	}
}

// passing returns the host:port of the instances of service that pass all
// their checks, with tag if it is not empty, and the index of that answer.
// With index > 0 it is a blocking query: it waits up to wait for the
// answer to change from the one at index.
func (c *Client) passing(ctx context.Context, service, tag string, index uint64,
	wait time.Duration) ([]string, uint64, error) {
	query := url.Values{"passing": {"1"}}
	if tag != "" {
		query.Set("tag", tag)
	}
	timeout := callTimeout
	if index > 0 {
		query.Set("index", strconv.FormatUint(index, 10))
		query.Set("wait", wait.String())
		timeout += wait + wait/16 // the agent adds up to wait/16 of jitter
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var entries []healthEntry
	path := "/v1/health/service/" + url.PathEscape(service)
	header, err := c.do(ctx, http.MethodGet, path, query, nil, &entries)
	if err != nil {
		return nil, 0, err
	}
	indexText := header.Get("X-Consul-Index")
	newIndex, err := strconv.ParseUint(indexText, 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("health of %s: X-Consul-Index %q: %w", service, indexText, err)
	}
	instances := make([]string, 0, len(entries))
	for _, e := range entries {
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address // a service registered without one has the node's
		}
		instance := net.JoinHostPort(host, strconv.Itoa(e.Service.Port))
		if scheme := e.Service.Meta["scheme"]; scheme != "" {
			instance = scheme + "://" + instance
		}
		instances = append(instances, instance)
	}
	return instances, newIndex, nil
}

// statusError is an answer of the agent other than 200 OK.
type statusError struct {
	Code int
	Body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("consul agent: %d %s: %s", e.Code, http.StatusText(e.Code), e.Body)
}

// do sends a request and decodes a 200 answer's JSON body into out, unless
// out is nil. Without a deadline in ctx, the call gets callTimeout.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte,
	out any) (http.Header, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512)) // the status says enough without it
		return nil, &statusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body) // so that the connection can be used again
		return resp.Header, err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return resp.Header, nil
}

// sleep waits for d or until ctx is done, and reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

func set(g prometheus.Gauge, v float64) {
	if g != nil {
		g.Set(v)
	}
}
