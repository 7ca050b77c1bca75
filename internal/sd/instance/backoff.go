package instance

import (
	"math/rand/v2"
	"time"
)

// MaxBackoff bounds a Backoff's wait, so that an instance is back soon
// after its registry is.
const MaxBackoff = 2 * time.Second

// Backoff is the wait before the next registry call after a failure: it
// doubles from 100ms up to MaxBackoff, with jitter so that many instances
// do not retry in step. The zero value is ready to use.
type Backoff struct{ next time.Duration }

// Wait returns how long to wait now and lengthens the next wait.
func (b *Backoff) Wait() time.Duration {
	if b.next == 0 {
		b.next = 100 * time.Millisecond
	}
	d := b.next + rand.N(b.next/4)
	b.next = min(2*b.next, MaxBackoff)
	return d
}

// Reset starts the waits from the shortest again, after a success.
func (b *Backoff) Reset() { b.next = 0 }
