package consul

import (
	"context"
	"fmt"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"stringsvc/internal/sd/instance"
)

// DefaultWait is the longest a blocking query waits when NewInstancer is
// given none.
const DefaultWait = 30 * time.Second

// minQueryGap spaces blocking queries out, as Consul's documentation asks
// of clients: a service whose checks flap would otherwise be queried in a
// loop. A change within the gap is seen by the next query, which returns
// at once.
const minQueryGap = 50 * time.Millisecond

// Instancer is an sd.Instancer of the instances (host:port) of one service
// that pass all their health checks, as the local agent sees them.
//
// It replaces go-kit's sd/consul.Instancer, which keeps its index across
// failed queries: after an agent restarted on fresh state, whose indexes
// are lower, its first query waits out the whole wait (five minutes by
// default) before the answer shows the lower index, so the set stays stale
// that long. Its queries also have no deadline, so an agent that hangs
// leaves it blocked and silent. Here every query has a deadline, the index
// is reset after a failed query and whenever it goes backwards, as
// Consul's documentation on blocking queries asks, failures are retried
// with backoff, and an unreachable agent is published as an sd.Event
// error: sd.NewEndpointer then keeps serving the last set.
type Instancer struct {
	client  *Client
	service string
	tag     string
	wait    time.Duration
	errors  prometheus.Counter
	logger  log.Logger
	cache   instance.Cache
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewInstancer follows the passing instances of service, only those with
// tag unless it is empty. A blocking query waits up to wait (zero:
// DefaultWait), which also bounds how long an agent that hangs without
// closing its connections goes unnoticed. errs counts failed queries.
func NewInstancer(client *Client, service, tag string, wait time.Duration, errs prometheus.Counter,
	logger log.Logger) *Instancer {
	if wait <= 0 {
		wait = DefaultWait
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &Instancer{
		client:  client,
		service: service,
		tag:     tag,
		wait:    wait,
		errors:  errs,
		logger:  log.With(logger, "service", service),
		cancel:  cancel,
		done:    make(chan struct{}),
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
	var (
		index   uint64 // 0: answer at once
		backoff instance.Backoff
		failing bool
	)
	for {
		instances, newIndex, err := in.client.passing(ctx, in.service, in.tag, index, in.wait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			inc(in.errors)
			in.cache.Update(sd.Event{Err: fmt.Errorf("health of %s from consul: %w", in.service, err)})
			if !failing {
				in.logger.Log("msg", "query failed, retrying with backoff", "err", err)
			}
			failing, index = true, 0 // the agent may come back on fresh state
			if !sleep(ctx, backoff.Wait()) {
				return
			}
			continue
		}
		if failing {
			in.logger.Log("msg", "query succeeded again")
		}
		failing = false
		backoff.Reset()
		index = nextIndex(index, newIndex)
		in.cache.Update(sd.Event{Instances: instances})
		if !sleep(ctx, minQueryGap) {
			return
		}
	}
}

// nextIndex is the index of the next blocking query after an answer at
// got to one at prev, following Consul's documentation: an index that went
// backwards (the agent restarted, a snapshot was restored) is reset to 0
// so that the next query answers at once, and an index of 0, which would
// not block, is raised to 1.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got < 1:
		return 1
	default:
		return got
	}
}
