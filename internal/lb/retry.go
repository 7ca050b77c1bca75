package lb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/ratelimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"
)

var (
	// ErrExhausted marks a call that failed on every attempt.
	ErrExhausted = errors.New("upstream failed")
	// ErrUnavailable marks a call that found no instance able to take it:
	// every breaker open, every limiter empty.
	ErrUnavailable = errors.New("no upstream instance available")
)

// Policy bounds the retry loop. Every duration and count must be positive.
type Policy struct {
	Op             string        // names the call in errors: "proxy uppercase"
	Attempts       int           // attempts per call, the first included
	AttemptTimeout time.Duration // bound of one attempt
	Timeout        time.Duration // bound of all attempts together
}

// Retry calls the balancer's picks until one answers. It is go-kit's
// lb.Retry reshaped, because lb.Retry shares one timeout across all
// attempts (one hung instance eats the whole budget), returns a bare
// context error when it runs out, and spends an attempt on an instance
// whose breaker is open or whose limiter is empty. Here:
//   - each attempt has its own timeout, inside the overall one, inside the
//     call's context;
//   - an instance that refuses at once (breaker open, limiter empty) is
//     skipped without spending an attempt, up to twice the instance count;
//   - an error is a failure of the instance; an answer the caller should
//     not retry (a business error) must ride inside the response.
//
// When every attempt failed the error wraps ErrExhausted and the last
// failure; when every instance refused, ErrUnavailable and the last
// refusal; when time ran out, context.DeadlineExceeded (or the call's
// context error). Each retry after a failure is counted in retries.
func Retry(src Endpointer, b Balancer, p Policy, retries prometheus.Counter) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		// One context per attempt, whose deadline is the sooner of the
		// attempt's and the call's: a second timer for the whole call
		// would cost as much again.
		deadline := time.Now().Add(p.Timeout)
		var (
			attempts, skips, maxSkips int
			lastErr, lastRefusal      error
		)
		for {
			instance, err := b.Pick()
			if err != nil {
				return nil, err
			}
			attemptCtx, cancel := context.WithDeadline(ctx, earliest(time.Now().Add(p.AttemptTimeout), deadline))
			response, err := instance.Endpoint(attemptCtx, request)
			cancel()
			switch {
			case err == nil:
				return response, nil
			case ctx.Err() != nil:
				return nil, fmt.Errorf("%s after %d attempts: %w", p.Op, attempts+1, ctx.Err())
			case !time.Now().Before(deadline):
				return nil, fmt.Errorf("%s after %d attempts: %w", p.Op, attempts+1, context.DeadlineExceeded)
			case RefusedAtOnce(err):
				if maxSkips == 0 {
					maxSkips = 2 * len(src.Instances())
				}
				skips++
				lastRefusal = err
				if skips < maxSkips {
					continue
				}
			default:
				attempts++
				lastErr = err
				if attempts < p.Attempts {
					retries.Inc()
					continue
				}
			}
			if lastErr == nil {
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, lastRefusal)
			}
			return nil, fmt.Errorf("%w after %d attempts: %w", ErrExhausted, attempts, lastErr)
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// RefusedAtOnce reports whether an instance declined a call without trying
// it: its breaker is open (or half-open and busy) or its limiter is empty.
func RefusedAtOnce(err error) bool {
	return errors.Is(err, ratelimit.ErrLimited) ||
		errors.Is(err, gobreaker.ErrOpenState) ||
		errors.Is(err, gobreaker.ErrTooManyRequests)
}
