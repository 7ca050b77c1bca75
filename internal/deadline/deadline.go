// Package deadline bounds a context by a deadline without starting a timer
// until something waits for it. A request that carries its caller's
// remaining time (a proxy's Request-Timeout-Ms) is bounded on every hop,
// but most handlers never wait on their context's Done: for them
// context.WithTimeout's timer, context and cancel func are three
// allocations and a runtime timer per request for nothing. It knows the
// context package and nothing of the service.
package deadline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// WithDeadline returns a context that is parent bounded by d, and a func
// that releases it; call it when the work is done, as with a
// context.CancelFunc. The returned context keeps context.Context's
// contract: Deadline reports the sooner of d and parent's; Err reports
// context.DeadlineExceeded once d has passed, whether or not anyone called
// Done; and Done, from its first call, closes when d passes or parent is
// done (only then is a timer started).
func WithDeadline(parent context.Context, d time.Time) (context.Context, func()) {
	if pd, ok := parent.Deadline(); ok && !pd.After(d) {
		return parent, func() {} // parent's own deadline comes first
	}
	c := &lazy{Context: parent, deadline: d}
	return c, c.release
}

// lazy is a context with a deadline whose timer starts at the first Done.
type lazy struct {
	context.Context // the parent: Value, and the cancellation it passes on
	deadline        time.Time

	once     sync.Once
	timed    context.Context // context.WithDeadline(parent, deadline), from the first Done
	cancel   context.CancelFunc
	released atomic.Bool
}

func (c *lazy) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazy) Done() <-chan struct{} {
	c.once.Do(func() { c.timed, c.cancel = context.WithDeadline(c.Context, c.deadline) })
	if c.timed == nil { // released before anyone waited
		return closed
	}
	return c.timed.Done()
}

// Err follows Done: the parent's error, then the deadline, then the
// release, which cancels the context as a CancelFunc would.
func (c *lazy) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	if c.released.Load() {
		return context.Canceled
	}
	return nil
}

// release stops the timer, if one was started, and cancels the context: a
// Done after it is closed.
func (c *lazy) release() {
	c.released.Store(true)
	c.once.Do(func() {})
	if c.cancel != nil {
		c.cancel()
	}
}

// closed is the Done of a context released before anyone waited.
var closed = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()
