package deadline

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestErrWithoutDone(t *testing.T) {
	ctx, release := WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer release()
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err() past the deadline, Done never called = %v; want %v", err, context.DeadlineExceeded)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after the deadline passed")
	}
}

func TestDoneClosesAtTheDeadline(t *testing.T) {
	ctx, release := WithDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
	defer release()
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err() before the deadline = %v; want nil", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after a 20ms deadline")
	}
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err() after Done = %v; want %v", err, context.DeadlineExceeded)
	}
}

func TestParentCancelPassesOn(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	ctx, release := WithDeadline(parent, time.Now().Add(time.Hour))
	defer release()
	if got := ctx.Value(key{}); got != "v" {
		t.Errorf("Value = %v; want the parent's v", got)
	}
	done := ctx.Done()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after the parent was cancelled")
	}
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err() after the parent's cancel = %v; want %v", err, context.Canceled)
	}
}

func TestReleaseCancels(t *testing.T) {
	for _, waited := range []bool{false, true} {
		ctx, release := WithDeadline(context.Background(), time.Now().Add(time.Hour))
		if waited {
			_ = ctx.Done() // the timer starts
		}
		release()
		select {
		case <-ctx.Done():
		default:
			t.Errorf("Done not closed after release (Done called before: %v)", waited)
		}
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("Err() after release (Done called before: %v) = %v; want %v", waited, err, context.Canceled)
		}
	}
}

func TestDeadlineIsTheSooner(t *testing.T) {
	soon := time.Now().Add(time.Minute)
	parent, cancel := context.WithDeadline(context.Background(), soon)
	defer cancel()
	ctx, release := WithDeadline(parent, soon.Add(time.Hour))
	defer release()
	if d, ok := ctx.Deadline(); !ok || !d.Equal(soon) {
		t.Errorf("Deadline() = %v, %v; want the parent's sooner %v", d, ok, soon)
	}
	later, release2 := WithDeadline(context.Background(), soon)
	defer release2()
	if d, ok := later.Deadline(); !ok || !d.Equal(soon) {
		t.Errorf("Deadline() = %v, %v; want %v", d, ok, soon)
	}
}

// TestChildContextsWork: context.WithDeadline and AfterFunc on top of it,
// as a proxy's retry loop uses them.
func TestChildContextsWork(t *testing.T) {
	ctx, release := WithDeadline(context.Background(), time.Now().Add(30*time.Millisecond))
	defer release()
	child, cancel := context.WithDeadline(ctx, time.Now().Add(time.Hour))
	defer cancel()
	fired := make(chan struct{})
	context.AfterFunc(child, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("a child's AfterFunc did not run 10s after the 30ms deadline")
	}
	if err := child.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("child Err() = %v; want %v", err, context.DeadlineExceeded)
	}
}

type key struct{}
