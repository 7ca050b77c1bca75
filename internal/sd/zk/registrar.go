package zk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/go-zookeeper/zk"

	"stringsvc/internal/sd/instance"
)

// Service is what a registrar puts in ZooKeeper.
type Service struct {
	Name string // the service: the node goes under ServicePath(Name)
	Addr string // the advertised host:port: the node's name and its data
	// Scheme, if set, is how proxies call the instance ("grpc"): the node's
	// data is then scheme://host:port. Empty: plain host:port (HTTP).
	Scheme string
}

// Registrar keeps an ephemeral node for this instance under
// ServicePath(name) while the process runs. The node is named for the
// advertised address, so an instance started again on the same address
// replaces the node its previous run may have left, instead of being
// listed twice until that session expires.
//
// It replaces go-kit's sd/zk.Registrar, which creates the node once: when
// the server expires the session (ZooKeeper unreachable for longer than
// the session timeout, a long GC pause, a network cut) the node goes with
// it and the instance never comes back by itself. Here Run creates the node
// again under the client's new session, and whenever it finds the node
// gone: a watch on it, every change of the session's state and a check
// every resync interval tell it so.
type Registrar struct {
	client  *Client
	node    string
	addr    string // the node's data
	resync  time.Duration
	metrics instance.RegistrarMetrics
	logger  log.Logger
}

// NewRegistrar returns a registrar of svc that checks its node every
// resync interval besides on every event.
func NewRegistrar(client *Client, svc Service, resync time.Duration,
	metrics instance.RegistrarMetrics, logger log.Logger) (*Registrar, error) {
	if _, _, err := net.SplitHostPort(svc.Addr); err != nil || strings.Contains(svc.Addr, "/") {
		return nil, fmt.Errorf("zookeeper registrar: advertise address %q is not host:port", svc.Addr)
	}
	node := path.Join(ServicePath(svc.Name), svc.Addr)
	data := svc.Addr
	if svc.Scheme != "" {
		data = svc.Scheme + "://" + svc.Addr
	}
	return &Registrar{
		client:  client,
		node:    node,
		addr:    data,
		resync:  resync,
		metrics: metrics,
		logger:  log.With(logger, "node", node),
	}, nil
}

// Node returns the path of the instance's node.
func (r *Registrar) Node() string { return r.node }

// Run registers the instance, giving up with an error if that does not
// succeed within firstTimeout (a call under way when it passes still ends
// first), and keeps it registered until ctx is done; then it deletes the
// node and returns nil.
func (r *Registrar) Run(ctx context.Context, firstTimeout time.Duration) error {
	session, unsubscribe := r.client.subscribe()
	defer unsubscribe()
	firstCtx, cancel := context.WithTimeout(ctx, firstTimeout)
	watch, err := r.keep(firstCtx, nil)
	cancel()
	switch {
	case err != nil && ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("register in zookeeper: no success within %v: %w", firstTimeout, err)
	}
	ticker := time.NewTicker(r.resync)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			r.deregister()
			return nil
		case <-watch:
			watch, _ = r.keep(ctx, nil) // a watch fires once: set another
		case <-session:
			watch, _ = r.keep(ctx, watch)
		case <-ticker.C:
			watch, _ = r.keep(ctx, watch)
		}
	}
}

// keep checks that the node is there under the current session and
// creates it if not, until that succeeds or ctx is done, waiting longer
// after each failure. Unless watch is still set, it sets a new watch on the
// node and returns it.
func (r *Registrar) keep(ctx context.Context, watch <-chan zk.Event) (<-chan zk.Event, error) {
	var (
		b       instance.Backoff
		created bool // by the last attempt: check it once before waiting
	)
	for {
		registered, w, err := r.check(watch)
		watch = w
		switch {
		case err == nil && registered:
			return watch, nil
		case err == nil && !created:
			if err = r.register(); err == nil {
				created = true
				continue
			}
		case err == nil:
			err = errors.New("node gone right after it was created")
		}
		created = false
		inc(r.metrics.Errors)
		wait := b.Wait()
		r.logger.Log("msg", "register failed, retrying", "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return watch, err
		}
	}
}

// check reports whether the node exists and belongs to the current
// session. Unless watch is still set, it sets a watch on the node.
func (r *Registrar) check(watch <-chan zk.Event) (bool, <-chan zk.Event, error) {
	var (
		exists bool
		stat   *zk.Stat
		err    error
	)
	if watch == nil {
		exists, stat, watch, err = r.client.conn.ExistsW(r.node)
	} else {
		exists, stat, err = r.client.conn.Exists(r.node)
	}
	if err != nil {
		return false, watch, fmt.Errorf("check %s: %w", r.node, err)
	}
	session := r.client.SessionID()
	registered := exists && session != 0 && stat.EphemeralOwner == session
	if !registered {
		set(r.metrics.Registered, 0)
	}
	return registered, watch, nil
}

// register creates the node under the current session, deleting first a
// node of the same name that another session left.
func (r *Registrar) register() error {
	if err := r.client.createPath(path.Dir(r.node)); err != nil {
		return err
	}
	conn := r.client.conn
	_, err := conn.Create(r.node, []byte(r.addr), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if errors.Is(err, zk.ErrNodeExists) {
		exists, stat, existsErr := conn.Exists(r.node)
		if existsErr != nil || !exists || stat.EphemeralOwner == r.client.SessionID() {
			return existsErr // the caller checks again
		}
		r.logger.Log("msg", "replacing the node of another session", "session", stat.EphemeralOwner)
		if err := conn.Delete(r.node, stat.Version); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("delete %s: %w", r.node, err)
		}
		_, err = conn.Create(r.node, []byte(r.addr), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", r.node, err)
	}
	inc(r.metrics.Registrations)
	set(r.metrics.Registered, 1)
	r.logger.Log("msg", "registered", "session", r.client.SessionID())
	return nil
}

// deregister deletes the node if it is this session's. If ZooKeeper cannot
// be reached, the node still goes when the session does.
func (r *Registrar) deregister() {
	set(r.metrics.Registered, 0)
	conn := r.client.conn
	exists, stat, err := conn.Exists(r.node)
	if err == nil && exists && stat.EphemeralOwner == r.client.SessionID() {
		err = conn.Delete(r.node, stat.Version)
	}
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		inc(r.metrics.Errors)
		r.logger.Log("msg", "deregister failed; the node goes with the session", "err", err)
		return
	}
	r.logger.Log("msg", "deregistered")
}
