package lb

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sony/gobreaker"

	"stringsvc/internal/testenv"
)

// observed records what Policy.Observe was told, and checks that the
// context it returns is the one the call gets.
type observed struct {
	mu       sync.Mutex
	attempts []Attempt
	errs     []error
}

type observeKey struct{}

func (o *observed) observe(ctx context.Context, a Attempt) (context.Context, func(error)) {
	o.mu.Lock()
	o.attempts = append(o.attempts, a)
	o.mu.Unlock()
	return context.WithValue(ctx, observeKey{}, a), func(err error) {
		o.mu.Lock()
		o.errs = append(o.errs, err)
		o.mu.Unlock()
	}
}

// seesObserved wraps in's endpoint to fail the test unless its context is
// the one Observe returned for this very call.
func seesObserved(t *testing.T, in *Instance) *Instance {
	next := in.Endpoint
	in.Endpoint = func(ctx context.Context, request any) (any, error) {
		if a, ok := ctx.Value(observeKey{}).(Attempt); !ok || a.Instance != in.Name {
			t.Errorf("%s called with Observe's context for %+v, %v; want its own", in.Name, a, ok)
		}
		return next(ctx, request)
	}
	return in
}

func TestObserveRetries(t *testing.T) {
	var calls atomic.Int64
	refusing := &Instance{Name: "open:1", Endpoint: func(context.Context, any) (any, error) {
		return nil, gobreaker.ErrOpenState
	}}
	// Round-robin: open, bad, open, good.
	src := fixed{
		seesObserved(t, refusing), seesObserved(t, failing("bad:1", &calls)),
		seesObserved(t, refusing), seesObserved(t, answering("good:1", "OK")),
	}
	var o observed
	p := policy()
	p.Observe = o.observe
	if got, err := Retry(src, NewRoundRobin(src), p)(context.Background(), "x"); err != nil || got != "OK" {
		t.Fatalf("Retry = %v, %v; want OK", got, err)
	}
	// A refusal spends no attempt: the call after it has its number.
	want := []Attempt{
		{Instance: "open:1", Number: 1}, {Instance: "bad:1", Number: 1},
		{Instance: "open:1", Number: 2}, {Instance: "good:1", Number: 2},
	}
	if diff := cmp.Diff(want, o.attempts); diff != "" {
		t.Errorf("observed attempts (-want +got):\n%s", diff)
	}
	wantErrs := []error{gobreaker.ErrOpenState, errors.New("upstream answered 500"), gobreaker.ErrOpenState, nil}
	if diff := cmp.Diff(wantErrs, o.errs, cmp.Comparer(func(a, b error) bool {
		return (a == nil) == (b == nil) && (a == nil || a.Error() == b.Error())
	})); diff != "" {
		t.Errorf("errors done was called with (-want +got):\n%s", diff)
	}
}

func TestObserveHedge(t *testing.T) {
	slow := &Instance{Name: "slow:1", Endpoint: func(ctx context.Context, _ any) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	src := fixed{seesObserved(t, slow), seesObserved(t, answering("fast:1", "FAST"))}
	var o observed
	p := policy()
	p.HedgeAfter = 10 * time.Millisecond
	p.Observe = o.observe
	if got, err := Retry(src, NewRoundRobin(src), p)(context.Background(), "x"); err != nil || got != "FAST" {
		t.Fatalf("hedged Retry = %v, %v; want FAST", got, err)
	}
	// The loser is cancelled when Retry returns; its done may come later.
	testenv.PollUntil(t, 10*time.Second, "done called for both attempts", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.errs) == 2
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	want := []Attempt{{Instance: "slow:1", Number: 1}, {Instance: "fast:1", Number: 1, Hedge: true}}
	if diff := cmp.Diff(want, o.attempts); diff != "" {
		t.Errorf("observed attempts (-want +got):\n%s", diff)
	}
	// The hedge answered (nil), the first attempt was cancelled.
	if (o.errs[0] != nil || !errors.Is(o.errs[1], context.Canceled)) &&
		(o.errs[1] != nil || !errors.Is(o.errs[0], context.Canceled)) {
		t.Errorf("done errors %v; want nil and context.Canceled", o.errs)
	}
}
