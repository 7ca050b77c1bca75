package etcd

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"

	"stringsvc/internal/sd/instance"
)

// Registrar keeps this instance's key in etcd while the process runs.
//
// It replaces go-kit's sd/etcdv3.Registrar, which registers once: when its
// lease is lost (etcd down for longer than the TTL, then back; a long
// network cut) the keep-alive channel closes inside go-kit's client, out of
// reach, and the instance never comes back by itself. Its Register also
// cannot report a failure, so start-up could not fail on it. Here Run
// registers under a fresh lease whenever the keep-alive stops, with
// backoff, until it is stopped; then it revokes the lease, which deletes
// the key, so proxies drop the instance at once instead of after the TTL.
type Registrar struct {
	client     *clientv3.Client
	key, value string
	ttl        time.Duration
	metrics    instance.RegistrarMetrics
	logger     log.Logger
}

// NewRegistrar returns a registrar that keeps key = value in etcd under a
// lease of ttl (rounded up to whole seconds) while it runs.
func NewRegistrar(client *clientv3.Client, key, value string, ttl time.Duration,
	metrics instance.RegistrarMetrics, logger log.Logger) *Registrar {
	return &Registrar{client: client, key: key, value: value, ttl: ttl, metrics: metrics, logger: logger}
}

// Run registers the instance, giving up with an error if that does not
// succeed within firstTimeout, and keeps it registered until ctx is done;
// then it deregisters it and returns nil.
func (r *Registrar) Run(ctx context.Context, firstTimeout time.Duration) error {
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
			r.metrics.Registered.Set(0)
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
func (r *Registrar) registerRetrying(ctx, keepCtx context.Context) (clientv3.LeaseID,
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
		r.metrics.Errors.Inc()
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
func (r *Registrar) register(ctx, keepCtx context.Context) (clientv3.LeaseID,
	<-chan *clientv3.LeaseKeepAliveResponse, error) {
	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
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
	r.metrics.Registrations.Inc()
	r.metrics.Registered.Set(1)
	r.logger.Log("msg", "registered", "key", r.key, "lease", grant.ID, "ttl", grant.TTL)
	return grant.ID, keepAlive, nil
}

// deregister revokes the lease, which deletes the key. If etcd cannot be
// reached the key still goes away when the lease expires.
func (r *Registrar) deregister(lease clientv3.LeaseID) {
	r.metrics.Registered.Set(0)
	if err := r.revoke(lease); err != nil {
		r.metrics.Errors.Inc()
		r.logger.Log("msg", "deregister failed; the key expires with its lease", "key", r.key, "err", err)
		return
	}
	r.logger.Log("msg", "deregistered", "key", r.key)
}

// revoke revokes lease under a fresh deadline: the caller's context may be
// done already.
func (r *Registrar) revoke(lease clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	_, err := r.client.Revoke(ctx, lease)
	return err
}
