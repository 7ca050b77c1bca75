// Package zk is service discovery through ZooKeeper: a client that holds a
// session, an sd.Instancer that follows the children of /services/<name>,
// and a registrar that keeps an ephemeral node there while the process
// runs, under whatever session the client has. It extends go-kit's sd/zk
// and uses the same library, the maintained fork github.com/go-zookeeper/zk
// of samuel/go-zookeeper. It knows go-kit's sd and ZooKeeper; nothing of
// the service, its transports or its flags.
package zk

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
)

// BasePath is the parent of every service's node: instances of name are
// the children of BasePath/name.
const BasePath = "/services"

// ServicePath returns the node whose children are the instances of name.
func ServicePath(name string) string { return path.Join(BasePath, name) }

// Client is a ZooKeeper session shared by an instancer and a registrar.
// The library keeps it connected: it reconnects after a lost connection and,
// once the server has expired the session, opens a new one. Whoever uses the
// session learns of every change of its state through Subscribe.
type Client struct {
	conn *zk.Conn

	mu   sync.Mutex
	subs map[chan struct{}]bool
}

// NewClient returns a client of the ZooKeeper servers (host:port). It does
// not wait for a session: calls do. The server bounds sessionTimeout to
// between 2 and 20 of its ticks.
func NewClient(servers []string, sessionTimeout time.Duration, logger log.Logger) (*Client, error) {
	c := &Client{subs: make(map[chan struct{}]bool)}
	conn, _, err := zk.Connect(servers, sessionTimeout,
		zk.WithLogger(zkLogger{logger}),
		zk.WithLogInfo(false), // one line per connect would drown ours
		zk.WithEventCallback(func(ev zk.Event) {
			if ev.Type == zk.EventSession {
				c.notify()
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("connect to zookeeper %v: %w", servers, err)
	}
	// The event channel Connect returns is not read: the library drops
	// events nobody takes, and the callback above sees them all.
	c.conn = conn
	return c, nil
}

// Close ends the session, which deletes its ephemeral nodes at once.
func (c *Client) Close() { c.conn.Close() }

// SessionID returns the current session's ID, 0 while there is none.
func (c *Client) SessionID() int64 { return c.conn.SessionID() }

// hasSession reports whether calls can be served now.
func (c *Client) hasSession() bool { return c.conn.State() == zk.StateHasSession }

// subscribe returns a channel that receives a value after every change of
// the session's state (several changes may be folded into one), and the
// function that ends the subscription.
func (c *Client) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.subs[ch] = true
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

// notify runs on the library's goroutines, which must not block.
func (c *Client) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default: // one is pending already
		}
	}
}

// createPath creates p and the nodes above it, those that do not exist, as
// persistent nodes.
func (c *Client) createPath(p string) error {
	node := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		node += "/" + part
		_, err := c.conn.Create(node, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", node, err)
		}
	}
	return nil
}

// zkLogger sends the library's lines to a go-kit logger.
type zkLogger struct{ logger log.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	l.logger.Log("msg", fmt.Sprintf(format, args...), "component", "zk")
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
