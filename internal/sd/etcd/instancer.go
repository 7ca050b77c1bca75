package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"stringsvc/internal/sd/instance"
)

// Instancer is an sd.Instancer of the values under an etcd key prefix.
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
type Instancer struct {
	client *clientv3.Client
	prefix string
	resync time.Duration
	errors prometheus.Counter
	logger log.Logger
	cache  instance.Cache
	cancel context.CancelFunc
	done   chan struct{}
}

// NewInstancer follows the values under prefix, reading the whole prefix
// again every resync, and counts failed reads and watches in errs.
func NewInstancer(client *clientv3.Client, prefix string, resync time.Duration,
	errs prometheus.Counter, logger log.Logger) *Instancer {
	ctx, cancel := context.WithCancel(context.Background())
	in := &Instancer{
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
	ticker := time.NewTicker(in.resync)
	defer ticker.Stop()
	var view prefixView
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
func (in *Instancer) start(ctx context.Context, view *prefixView) (
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
func (in *Instancer) read(ctx context.Context, view *prefixView) bool {
	readCtx, cancel := context.WithTimeout(ctx, callTimeout)
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

// prefixView is the instancer's copy of the prefix: key → value, as of
// revision rev.
type prefixView struct {
	entries map[string]string
	rev     int64
}

func (v *prefixView) reset(resp *clientv3.GetResponse) {
	v.entries = make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v.entries[string(kv.Key)] = string(kv.Value)
	}
	v.rev = resp.Header.Revision
}

// apply applies the watch events newer than the view (a resync may have
// read past some already) and reports whether any did.
func (v *prefixView) apply(events []*clientv3.Event) bool {
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
func (v *prefixView) instances() []string {
	instances := make([]string, 0, len(v.entries))
	for _, value := range v.entries {
		if value != "" {
			instances = append(instances, value)
		}
	}
	slices.Sort(instances)
	return slices.Compact(instances)
}
