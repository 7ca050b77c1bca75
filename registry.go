package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// etcdCallTimeout bounds one call to etcd: a read, a grant, a put, a revoke.
const etcdCallTimeout = 2 * time.Second

// newEtcdClient returns a client of the etcd cluster at endpoints. It does
// not wait for a connection: calls do, each under its own deadline.
func newEtcdClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          etcdCallTimeout,
		DialKeepAliveTime:    10 * time.Second, // etcd refuses pings more often than every 5s
		DialKeepAliveTimeout: 3 * time.Second,
		// gRPC's reconnect backoff grows to 2 minutes by default, so after
		// a long outage an instance would wait that long to register
		// again once etcd is back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		})},
		Logger: zap.NewNop(), // its JSON lines would break our logfmt; errors reach us as errors
	})
}

// closeEtcdClient closes client; a failure is only worth a log line, as the
// client is not used again.
func closeEtcdClient(client *clientv3.Client, logger log.Logger) {
	if err := client.Close(); err != nil {
		logger.Log("msg", "close etcd client", "err", err)
	}
}

// etcdInstancer is an sd.Instancer of the values under an etcd key prefix.
//
// It replaces go-kit's sd/etcdv3.Instancer, whose gaps cannot be fixed from
// outside: it reads the prefix and then watches from the then-current
// revision, so a key put in between is missed until the next change; its
// watch, once cancelled (a compaction, a lost leader), is never started
// again; and its reads have no deadline, so an unreachable etcd leaves it
// blocked and silent. Here the watch starts at the read's revision + 1 (no
// gap), a failed watch is replaced after a fresh read, and every resync
// interval the whole prefix is read again under a deadline. That read both
// repairs any drift and notices an unreachable etcd, which is published as
// an sd.Event error: sd.NewEndpointer then keeps serving the last set.
type etcdInstancer struct {
	client *clientv3.Client
	prefix string
	resync time.Duration
	errors prometheus.Counter
	logger log.Logger
	cache  instanceCache
	cancel context.CancelFunc
	done   chan struct{}
}

func newEtcdInstancer(client *clientv3.Client, prefix string, resync time.Duration,
	errs prometheus.Counter, logger log.Logger) *etcdInstancer {
	ctx, cancel := context.WithCancel(context.Background())
	in := &etcdInstancer{
		client: client,
		prefix: prefix,
		resync: resync,
		errors: errs,
		logger: log.With(logger, "prefix", prefix),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go in.loop(ctx)
	return in
}

// Register implements sd.Instancer.
func (in *etcdInstancer) Register(ch chan<- sd.Event) { in.cache.Register(ch) }

// Deregister implements sd.Instancer.
func (in *etcdInstancer) Deregister(ch chan<- sd.Event) { in.cache.Deregister(ch) }

// Stop implements sd.Instancer. It returns once the instancer has stopped.
func (in *etcdInstancer) Stop() {
	in.cancel()
	<-in.done
}

func (in *etcdInstancer) loop(ctx context.Context) {
	defer close(in.done)
	ticker := time.NewTicker(in.resync)
	defer ticker.Stop()
	var view etcdView
	watch, stopWatch := in.start(ctx, &view)
	defer func() { stopWatch() }()
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-watch:
			if ok && resp.Err() == nil {
				if view.apply(resp.Events) {
					in.cache.Update(sd.Event{Instances: view.instances()})
				}
				continue
			}
			if ctx.Err() != nil {
				return
			}
			in.errors.Inc()
			in.logger.Log("msg", "watch ended, reading again", "err", watchErr(resp, ok))
			stopWatch()
			watch, stopWatch = in.start(ctx, &view) // if this read fails too, the next tick retries
		case <-ticker.C:
			if watch == nil {
				watch, stopWatch = in.start(ctx, &view)
			} else {
				in.read(ctx, &view)
			}
		}
	}
}

func watchErr(resp clientv3.WatchResponse, ok bool) error {
	if !ok {
		return errors.New("watch channel closed")
	}
	return resp.Err()
}

// start reads the prefix and watches it from the revision after the read.
// If the read fails it returns a nil channel, which never delivers.
func (in *etcdInstancer) start(ctx context.Context, view *etcdView) (
	clientv3.WatchChan, context.CancelFunc) {
	if !in.read(ctx, view) {
		return nil, func() {}
	}
	// WithRequireLeader: a member cut off from its cluster ends the watch
	// instead of keeping it open and silent.
	watchCtx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	watch := in.client.Watch(watchCtx, in.prefix, clientv3.WithPrefix(), clientv3.WithRev(view.rev+1))
	return watch, cancel
}

// read replaces view with the prefix as etcd has it now and publishes the
// result: the instances, or the error.
func (in *etcdInstancer) read(ctx context.Context, view *etcdView) bool {
	readCtx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
	defer cancel()
	resp, err := in.client.Get(readCtx, in.prefix, clientv3.WithPrefix())
	if err != nil {
		if ctx.Err() == nil {
			in.errors.Inc()
			in.cache.Update(sd.Event{Err: fmt.Errorf("read %s from etcd: %w", in.prefix, err)})
		}
		return false
	}
	view.reset(resp)
	in.cache.Update(sd.Event{Instances: view.instances()})
	return true
}

// etcdView is the instancer's copy of the prefix: key → value, as of
// revision rev.
type etcdView struct {
	entries map[string]string
	rev     int64
}

func (v *etcdView) reset(resp *clientv3.GetResponse) {
	v.entries = make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v.entries[string(kv.Key)] = string(kv.Value)
	}
	v.rev = resp.Header.Revision
}

// apply applies the watch events newer than the view (a resync may have
// read past some already) and reports whether any did.
func (v *etcdView) apply(events []*clientv3.Event) bool {
	changed := false
	for _, ev := range events {
		if ev.Kv.ModRevision <= v.rev {
			continue
		}
		v.rev = ev.Kv.ModRevision
		changed = true
		switch ev.Type {
		case clientv3.EventTypePut:
			v.entries[string(ev.Kv.Key)] = string(ev.Kv.Value)
		case clientv3.EventTypeDelete:
			delete(v.entries, string(ev.Kv.Key))
		}
	}
	return changed
}

// instances returns the distinct non-empty values, sorted.
func (v *etcdView) instances() []string {
	instances := make([]string, 0, len(v.entries))
	for _, value := range v.entries {
		if value != "" {
			instances = append(instances, value)
		}
	}
	slices.Sort(instances)
	return slices.Compact(instances)
}

// instanceCache holds an instancer's latest event and sends it to every
// subscriber: at once on Register, then on every change. It is go-kit's
// sd/internal/instance.Cache, which cannot be imported from outside go-kit.
// The zero value is ready to use.
type instanceCache struct {
	mu    sync.Mutex
	state sd.Event
	subs  map[chan<- sd.Event]bool
}

// Update records ev and, if it differs from the last one, sends it to every
// subscriber.
func (c *instanceCache) Update(ev sd.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.Sort(ev.Instances)
	if slices.Equal(ev.Instances, c.state.Instances) && errText(ev.Err) == errText(c.state.Err) {
		return
	}
	c.state = ev
	for ch := range c.subs {
		ch <- copyEvent(ev)
	}
}

func (c *instanceCache) Register(ch chan<- sd.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		c.subs = make(map[chan<- sd.Event]bool)
	}
	c.subs[ch] = true
	ch <- copyEvent(c.state)
}

func (c *instanceCache) Deregister(ch chan<- sd.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, ch)
}

// copyEvent gives each subscriber its own slice: go-kit's endpoint cache
// sorts the one it gets.
func copyEvent(ev sd.Event) sd.Event {
	ev.Instances = slices.Clone(ev.Instances)
	return ev
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// etcdRegistrar keeps this instance's key in etcd while the process runs.
//
// It replaces go-kit's sd/etcdv3.Registrar, which registers once: when its
// lease is lost (etcd down for longer than the TTL, then back; a long
// network cut) the keep-alive channel closes inside go-kit's client, out of
// reach, and the instance never comes back by itself. Its Register also
// cannot report a failure, so start-up could not fail on it. Here Run
// registers under a fresh lease whenever the keep-alive stops, with
// backoff, until it is stopped; then it revokes the lease, which deletes
// the key, so proxies drop the instance at once instead of after the TTL.
type etcdRegistrar struct {
	client     *clientv3.Client
	key, value string
	ttl        time.Duration
	metrics    *discoveryMetrics
	logger     log.Logger
}

// Run registers the instance, giving up with an error if that does not
// succeed within firstTimeout, and keeps it registered until ctx is done;
// then it deregisters it and returns nil.
func (r *etcdRegistrar) Run(ctx context.Context, firstTimeout time.Duration) error {
	firstCtx, cancel := context.WithTimeout(ctx, firstTimeout)
	lease, keepAlive, err := r.registerRetrying(firstCtx, ctx)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("register in etcd: no success within -registry.timeout %v: %w", firstTimeout, err)
	}
	for {
		select {
		case _, ok := <-keepAlive:
			if ok {
				continue // a renewal; the channel must be drained
			}
			if ctx.Err() != nil {
				r.deregister(lease)
				return nil
			}
			r.metrics.registered.Set(0)
			r.logger.Log("msg", "lease lost, registering again", "lease", lease)
			if lease, keepAlive, err = r.registerRetrying(ctx, ctx); err != nil {
				return nil // only ctx ends the retries
			}
		case <-ctx.Done():
			r.deregister(lease)
			return nil
		}
	}
}

// maxRegisterBackoff bounds the wait between registration attempts, so
// that an instance is back soon after etcd is.
const maxRegisterBackoff = 2 * time.Second

// registerRetrying registers until it succeeds or ctx is done, waiting
// longer after each failure, up to maxRegisterBackoff, with jitter so that
// many instances do not retry in step. The lease is kept alive until
// keepCtx is done.
func (r *etcdRegistrar) registerRetrying(ctx, keepCtx context.Context) (clientv3.LeaseID,
	<-chan *clientv3.LeaseKeepAliveResponse, error) {
	backoff := 100 * time.Millisecond
	for {
		lease, keepAlive, err := r.register(ctx, keepCtx)
		if err == nil {
			return lease, keepAlive, nil
		}
		if ctx.Err() != nil {
			return 0, nil, err
		}
		r.metrics.errors.WithLabelValues("etcd").Inc()
		wait := backoff + rand.N(backoff/4)
		r.logger.Log("msg", "register failed, retrying", "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, nil, err
		}
		backoff = min(2*backoff, maxRegisterBackoff)
	}
}

// register puts the key under a new lease and keeps the lease alive until
// keepCtx is done.
func (r *etcdRegistrar) register(ctx, keepCtx context.Context) (clientv3.LeaseID,
	<-chan *clientv3.LeaseKeepAliveResponse, error) {
	callCtx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
	defer cancel()
	grant, err := r.client.Grant(callCtx, int64(math.Ceil(r.ttl.Seconds())))
	if err != nil {
		return 0, nil, fmt.Errorf("grant lease: %w", err)
	}
	if _, err := r.client.Put(callCtx, r.key, r.value, clientv3.WithLease(grant.ID)); err != nil {
		r.revoke(grant.ID) // best effort: an unused lease also expires by itself
		return 0, nil, fmt.Errorf("put %s: %w", r.key, err)
	}
	keepAlive, err := r.client.KeepAlive(keepCtx, grant.ID)
	if err != nil {
		r.revoke(grant.ID) // best effort, as above
		return 0, nil, fmt.Errorf("keep lease alive: %w", err)
	}
	r.metrics.registrations.Inc()
	r.metrics.registered.Set(1)
	r.logger.Log("msg", "registered", "key", r.key, "lease", grant.ID, "ttl", grant.TTL)
	return grant.ID, keepAlive, nil
}

// deregister revokes the lease, which deletes the key. If etcd cannot be
// reached the key still goes away when the lease expires.
func (r *etcdRegistrar) deregister(lease clientv3.LeaseID) {
	r.metrics.registered.Set(0)
	if err := r.revoke(lease); err != nil {
		r.metrics.errors.WithLabelValues("etcd").Inc()
		r.logger.Log("msg", "deregister failed; the key expires with its lease", "key", r.key, "err", err)
		return
	}
	r.logger.Log("msg", "deregistered", "key", r.key)
}

// revoke revokes lease under a fresh deadline: the caller's context may be
// done already.
func (r *etcdRegistrar) revoke(lease clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), etcdCallTimeout)
	defer cancel()
	_, err := r.client.Revoke(ctx, lease)
	return err
}
