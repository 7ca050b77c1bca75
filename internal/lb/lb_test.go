package lb

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker"
)

// These are unit tests of the balancing and retry logic, over instances
// whose endpoints are plain functions; the proxy's tests run the same code
// against real servers.

// fixed is an Endpointer of a fixed set.
type fixed []*Instance

func (f fixed) Instances() []*Instance { return f }

func answering(name string, v string) *Instance {
	return &Instance{Name: name, Endpoint: func(context.Context, any) (any, error) { return v, nil }}
}

func failing(name string, calls *atomic.Int64) *Instance {
	return &Instance{Name: name, Endpoint: func(context.Context, any) (any, error) {
		calls.Add(1)
		return nil, errors.New("upstream answered 500")
	}}
}

func counter() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}) }

func policy() Policy {
	return Policy{Op: "test", Attempts: 3, AttemptTimeout: 5 * time.Second, Timeout: 10 * time.Second,
		Metrics: Metrics{Retries: counter(), RetriesRefused: counter(), Hedges: counter(), HedgesWon: counter()}}
}

func TestBudget(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := NewBudget(0.2, 0) // no minimum: only the ratio
	for range 10 {
		b.Call(t0)
	}
	for i := range 2 {
		if !b.Allow(t0) {
			t.Fatalf("Allow #%d after 10 calls at ratio 0.2: refused; want the first 2 allowed", i+1)
		}
	}
	if b.Allow(t0) {
		t.Errorf("Allow: a 3rd retry after 10 calls at ratio 0.2 allowed; want refused")
	}
	later := t0.Add(budgetWindow * time.Second) // the window has moved past all of it
	if b.Allow(later) {
		t.Errorf("Allow %ds later with no calls since: allowed; want refused", budgetWindow)
	}
	withMin := NewBudget(0, 1) // one retry per second over the window, no calls needed
	for i := range budgetWindow {
		if !withMin.Allow(t0) {
			t.Fatalf("Allow #%d with a minimum of 1/s: refused; want %d allowed", i+1, budgetWindow)
		}
	}
	if withMin.Allow(t0) {
		t.Errorf("Allow #%d with a minimum of 1/s: allowed; want refused", budgetWindow+1)
	}
	var unbounded *Budget
	if !unbounded.Allow(t0) {
		t.Errorf("nil Budget refused; want every retry allowed")
	}
}

func TestRetryBudgetRefusesRetry(t *testing.T) {
	var calls atomic.Int64
	src := fixed{failing("a:1", &calls), failing("b:1", &calls)}
	p := policy()
	p.Budget = NewBudget(0, 0) // no retry allowed
	_, err := Retry(src, NewRoundRobin(src), p)(context.Background(), "x")
	if !errors.Is(err, ErrExhausted) {
		t.Errorf("Retry with an empty budget = %v; want ErrExhausted", err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("Retry with an empty budget made %d attempts; want 1", got)
	}
	if got := testutil.ToFloat64(p.Metrics.RetriesRefused); got != 1 {
		t.Errorf("retries refused = %v; want 1", got)
	}

	calls.Store(0)
	p.Budget = nil // unbounded: Attempts decides
	if _, err := Retry(src, NewRoundRobin(src), p)(context.Background(), "x"); !errors.Is(err, ErrExhausted) {
		t.Errorf("Retry without a budget = %v; want ErrExhausted", err)
	}
	if got := calls.Load(); got != int64(p.Attempts) {
		t.Errorf("Retry without a budget made %d attempts; want %d", got, p.Attempts)
	}
}

func TestRetryBackoffNeverPassesTheDeadline(t *testing.T) {
	var calls atomic.Int64
	src := fixed{failing("a:1", &calls)}
	p := policy()
	p.Backoff = time.Hour // any wait would end past the deadline
	_, err := Retry(src, NewRoundRobin(src), p)(context.Background(), "x")
	if !errors.Is(err, ErrExhausted) || calls.Load() != 1 {
		t.Errorf("Retry with a backoff past the deadline = %v after %d attempts; want ErrExhausted after 1",
			err, calls.Load())
	}
}

func TestHedgeGoesToAnotherInstanceAndTheLoserIsCancelled(t *testing.T) {
	loserDone := make(chan error, 1)
	slow := &Instance{Name: "slow:1", Endpoint: func(ctx context.Context, _ any) (any, error) {
		<-ctx.Done()
		loserDone <- ctx.Err()
		return nil, ctx.Err()
	}}
	src := fixed{slow, answering("fast:1", "FAST")}
	p := policy()
	p.HedgeAfter = 10 * time.Millisecond
	// Round-robin picks slow first; only the hedge can answer.
	got, err := Retry(src, NewRoundRobin(src), p)(context.Background(), "x")
	if err != nil || got != "FAST" {
		t.Fatalf("hedged Retry = %v, %v; want FAST from the other instance", got, err)
	}
	select {
	case err := <-loserDone:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the slow attempt ended with %v; want it cancelled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow attempt still runs 10s after the hedge won")
	}
	if h, w := testutil.ToFloat64(p.Metrics.Hedges), testutil.ToFloat64(p.Metrics.HedgesWon); h != 1 || w != 1 {
		t.Errorf("hedges sent, won = %v, %v; want 1, 1", h, w)
	}
}

func TestHedgeBudgetAndSingleInstance(t *testing.T) {
	slowThenOK := func(name string) *Instance {
		return &Instance{Name: name, Endpoint: func(ctx context.Context, _ any) (any, error) {
			select {
			case <-time.After(50 * time.Millisecond):
				return name, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}}
	}
	p := policy()
	p.HedgeAfter = time.Millisecond
	one := fixed{slowThenOK("only:1")}
	if got, err := Retry(one, NewRoundRobin(one), p)(context.Background(), "x"); err != nil || got != "only:1" {
		t.Fatalf("Retry over one instance = %v, %v; want its answer", got, err)
	}
	if got := testutil.ToFloat64(p.Metrics.Hedges); got != 0 {
		t.Errorf("hedges with a single instance = %v; want 0 (never to the same instance)", got)
	}
	two := fixed{slowThenOK("a:1"), slowThenOK("b:1")}
	p.HedgeBudget = NewBudget(0, 0) // no hedge allowed
	if _, err := Retry(two, NewRoundRobin(two), p)(context.Background(), "x"); err != nil {
		t.Fatalf("Retry with an empty hedge budget = %v; want an answer", err)
	}
	if got := testutil.ToFloat64(p.Metrics.Hedges); got != 0 {
		t.Errorf("hedges with an empty hedge budget = %v; want 0", got)
	}
}

func TestP2CAvoidsAnUnavailableInstance(t *testing.T) {
	open := answering("open:1", "OPEN")
	open.Available = func() bool { return false } // its breaker is open
	src := fixed{open, answering("a:1", "A"), answering("b:1", "B")}
	b := NewP2C(src)
	for range 200 {
		in, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		if in == open {
			t.Fatalf("Pick returned %s, whose breaker is open, with two others available", in.Name)
		}
	}
	all := fixed{open}
	if in, err := NewP2C(all).Pick(); err != nil || in != open {
		t.Errorf("Pick with only an unavailable instance = %v, %v; want it (the retry loop skips it)", in, err)
	}
	if _, err := NewP2C(fixed{}).Pick(); !errors.Is(err, ErrNoEndpoints) {
		t.Errorf("Pick with no instances = %v; want ErrNoEndpoints", err)
	}
}

func TestP2CPrefersTheLighterInstance(t *testing.T) {
	now := time.Now()
	fast, slow := answering("fast:1", "F"), answering("slow:1", "S")
	fast.observe(time.Millisecond, now)
	slow.observe(20*time.Millisecond, now)
	src := fixed{fast, slow}
	b := NewP2C(src)
	for range 100 {
		if in, _ := b.Pick(); in != fast {
			t.Fatalf("Pick between 1ms and 20ms instances returned %s; want the fast one", in.Name)
		}
	}
	fast.inflight.Store(40) // 1ms × 41 is heavier than 20ms × 1
	if in, _ := b.Pick(); in != slow {
		t.Errorf("Pick with the fast instance 40 calls deep returned %s; want the idle slow one", in.Name)
	}
}

func TestP2CNewInstanceStartsNeutral(t *testing.T) {
	now := time.Now()
	a, c := answering("a:1", "A"), answering("c:1", "C")
	a.observe(10*time.Millisecond, now)
	c.observe(10*time.Millisecond, now)
	fresh := answering("new:1", "N")
	src := fixed{a, c, fresh}
	neutral := neutralCost(src, now)
	if got := fresh.score(neutral, now); got < 0.009 {
		t.Errorf("score of an unmeasured instance = %v; want about the others' 10ms, not zero", got)
	}
}

func TestFailureCountsAsSlow(t *testing.T) {
	var calls atomic.Int64
	bad := failing("bad:1", &calls)
	p := policy()
	p.Attempts = 1
	p.AttemptTimeout = 100 * time.Millisecond
	Retry(fixed{bad}, NewRoundRobin(fixed{bad}), p)(context.Background(), "x")
	if got := bad.EWMA(time.Now()); got < 90*time.Millisecond {
		t.Errorf("EWMA after a failure that took microseconds = %v; want about the attempt timeout, 100ms", got)
	}
	refusing := &Instance{Name: "open:1", Endpoint: func(context.Context, any) (any, error) {
		return nil, gobreaker.ErrOpenState
	}}
	Retry(fixed{refusing}, NewRoundRobin(fixed{refusing}), p)(context.Background(), "x")
	if got := refusing.EWMA(time.Now()); got != 0 {
		t.Errorf("EWMA after a refusal = %v; want 0 (a refusal is not measured)", got)
	}
}

// TestRefuseWhileOpen: an open breaker refuses before the endpoint inside
// it is called; closed, the call goes through.
func TestRefuseWhileOpen(t *testing.T) {
	t.Parallel()
	breaker := gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Timeout:     time.Hour,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
	})
	var calls atomic.Int64
	e := RefuseWhileOpen(breaker)(func(context.Context, any) (any, error) {
		calls.Add(1)
		return "ok", nil
	})
	if v, err := e(context.Background(), nil); v != "ok" || err != nil || calls.Load() != 1 {
		t.Fatalf("call with the breaker closed = %v, %v after %d calls; want ok, nil after 1", v, err, calls.Load())
	}
	if _, err := breaker.Execute(func() (any, error) { return nil, errors.New("down") }); err == nil {
		t.Fatal("failing call through the breaker = nil error")
	}
	if breaker.State() != gobreaker.StateOpen {
		t.Fatalf("breaker %v after a failure; want open", breaker.State())
	}
	if _, err := e(context.Background(), nil); !errors.Is(err, gobreaker.ErrOpenState) || calls.Load() != 1 {
		t.Errorf("call with the breaker open = %v after %d calls; want %v and no call", err, calls.Load(), gobreaker.ErrOpenState)
	}
}
