package lb

import (
	"sync"
	"time"
)

// budgetWindow is how far back a Budget counts, in whole seconds.
const budgetWindow = 10

// Budget bounds extra calls (retries, hedges) to a ratio of the calls made
// over the last ten seconds, plus a minimum per second that is always
// allowed: Finagle's retry budget. A nil *Budget allows everything. It is
// safe for concurrent use.
type Budget struct {
	ratio     float64
	minPerSec float64

	mu      sync.Mutex
	buckets [budgetWindow]budgetBucket
}

type budgetBucket struct {
	sec          int64 // the Unix second this bucket counts
	calls, extra int
}

// NewBudget returns a budget of ratio extra calls per call plus minPerSec
// extra calls per second.
func NewBudget(ratio, minPerSec float64) *Budget {
	return &Budget{ratio: ratio, minPerSec: minPerSec}
}

// bucket returns the bucket of now's second, emptied if it held an older
// one; b.mu is held.
func (b *Budget) bucket(now time.Time) *budgetBucket {
	sec := now.Unix()
	bk := &b.buckets[sec%budgetWindow]
	if bk.sec != sec {
		*bk = budgetBucket{sec: sec}
	}
	return bk
}

// Call records a call made at now.
func (b *Budget) Call(now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.bucket(now).calls++
	b.mu.Unlock()
}

// Allow reports whether an extra call at now fits the budget, and counts
// it if it does.
func (b *Budget) Allow(now time.Time) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.bucket(now)
	var calls, extra int
	for i := range b.buckets {
		if bk := &b.buckets[i]; now.Unix()-bk.sec < budgetWindow {
			calls += bk.calls
			extra += bk.extra
		}
	}
	if float64(extra+1) > b.ratio*float64(calls)+b.minPerSec*budgetWindow {
		return false
	}
	cur.extra++
	return true
}
