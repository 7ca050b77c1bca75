package zk

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"stringsvc/internal/sd/instance"
)

// errNoSession is published while the client has no session: the set may
// have changed unseen.
var errNoSession = errors.New("no zookeeper session")

// Instancer is an sd.Instancer of the instances of one service: the data
// (an address) of each child of ServicePath(name).
//
// It replaces go-kit's sd/zk.Instancer, which stops for good after one
// failed read: the read that fails returns no watch, and its loop then
// waits on that nil channel forever. Here a failed read is retried with
// backoff, a watch that ends (it fired, or the session expired) is set
// again by the next read, every resync interval the children are read
// again in case a watch was lost without a word, and while the client has
// no session the instancer publishes an sd.Event error: sd.NewEndpointer
// then keeps serving the last set.
type Instancer struct {
	client *Client
	path   string
	resync time.Duration
	errors prometheus.Counter
	logger log.Logger
	cache  instance.Cache
	cancel context.CancelFunc
	done   chan struct{}
}

// NewInstancer follows the instances of name, reading them again every
// resync interval besides on every change; errs counts failed reads and
// lost sessions. It creates ServicePath(name) if it does not exist, so that
// there is a node to watch.
func NewInstancer(client *Client, name string, resync time.Duration, errs prometheus.Counter,
	logger log.Logger) *Instancer {
	ctx, cancel := context.WithCancel(context.Background())
	p := ServicePath(name)
	in := &Instancer{
		client: client,
		path:   p,
		resync: resync,
		errors: errs,
		logger: log.With(logger, "path", p),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go in.loop(ctx)
	return in
}

// Register implements sd.Instancer.
func (in *Instancer) Register(ch chan<- sd.Event) { in.cache.Register(ch) }

// Deregister implements sd.Instancer.
func (in *Instancer) Deregister(ch chan<- sd.Event) { in.cache.Deregister(ch) }

// Stop implements sd.Instancer. It returns once the instancer has stopped.
func (in *Instancer) Stop() {
	in.cancel()
	<-in.done
}

func (in *Instancer) loop(ctx context.Context) {
	defer close(in.done)
	session, unsubscribe := in.client.subscribe()
	defer unsubscribe()
	ticker := time.NewTicker(in.resync)
	defer ticker.Stop()
	var (
		watch   <-chan zk.Event // nil while no watch is set
		retry   <-chan time.Time
		backoff instance.Backoff
		lost    bool // the session was lost and that was published
	)
	read := func() {
		var err error
		if watch, err = in.read(watch); err != nil {
			retry = time.After(backoff.Wait())
			return
		}
		backoff.Reset()
		retry, lost = nil, false
	}
	read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-watch:
			watch = nil // a watch fires once; ending the session also fires it
			read()
		case <-session:
			switch {
			case in.client.hasSession():
				read()
			case !lost:
				lost = true
				inc(in.errors)
				in.cache.Update(sd.Event{Err: fmt.Errorf("follow %s: %w", in.path, errNoSession)})
			}
		case <-retry:
			read()
		case <-ticker.C:
			read()
		}
	}
}

// read publishes the instances as ZooKeeper has them now, or the error.
// Unless watch is still set, it sets a new watch on the children and
// returns it.
func (in *Instancer) read(watch <-chan zk.Event) (<-chan zk.Event, error) {
	instances, newWatch, err := in.instances(watch == nil)
	if err != nil {
		inc(in.errors)
		in.cache.Update(sd.Event{Err: err})
		return watch, err
	}
	in.cache.Update(sd.Event{Instances: instances})
	if newWatch != nil {
		return newWatch, nil
	}
	return watch, nil
}

// instances returns the distinct non-empty data of the children, sorted,
// and a watch on the children if asked for one.
func (in *Instancer) instances(setWatch bool) ([]string, <-chan zk.Event, error) {
	children, watch, err := in.children(setWatch)
	if err != nil {
		return nil, nil, fmt.Errorf("read children of %s: %w", in.path, err)
	}
	instances := make([]string, 0, len(children))
	for _, child := range children {
		data, _, err := in.client.conn.Get(path.Join(in.path, child))
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // gone since the list; the watch tells of it
		case err != nil:
			return nil, nil, fmt.Errorf("read %s/%s: %w", in.path, child, err)
		case len(data) > 0:
			instances = append(instances, string(data))
		}
	}
	slices.Sort(instances)
	return slices.Compact(instances), watch, nil
}

// children lists the children, creating the service's node first if it
// does not exist.
func (in *Instancer) children(setWatch bool) ([]string, <-chan zk.Event, error) {
	conn := in.client.conn
	for range 2 {
		var (
			children []string
			watch    <-chan zk.Event
			err      error
		)
		if setWatch {
			children, _, watch, err = conn.ChildrenW(in.path)
		} else {
			children, _, err = conn.Children(in.path)
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return children, watch, err
		}
		if err := in.client.createPath(in.path); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("%s: %w", in.path, zk.ErrNoNode)
}
