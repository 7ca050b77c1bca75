package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-kit/kit/ratelimit"
	"github.com/go-kit/kit/sd/lb"
	"github.com/sony/gobreaker"
)

var (
	errNotFound         = errors.New("not found")
	errMethodNotAllowed = errors.New("method not allowed")
	// errUpstream marks a proxied call that failed on every attempt.
	errUpstream = errors.New("upstream failed")
	// errUnavailable marks a proxied call that found no instance able to
	// take it: every breaker open, every limiter empty.
	errUnavailable = errors.New("no upstream instance available")
)

// statusClientClosedRequest is nginx's non-standard status for a request
// whose client went away before the answer; nobody reads it but the logs
// and metrics.
const statusClientClosedRequest = 499

// errorStatus maps an error to its HTTP status. It is the only place that
// does. Order matters: a deadline inside an upstream failure is a 504.
func errorStatus(err error) int {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, ErrEmpty), errors.As(err, &badRequestError{}):
		return http.StatusBadRequest
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed
	case errors.Is(err, context.Canceled):
		return statusClientClosedRequest
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, errUnavailable), errors.Is(err, lb.ErrNoEndpoints),
		errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests),
		errors.Is(err, ratelimit.ErrLimited):
		return http.StatusServiceUnavailable
	case errors.Is(err, errUpstream):
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// statusMessage is the body of a 5xx: short and safe to show. The full error
// goes to the log.
func statusMessage(status int) string {
	switch status {
	case http.StatusBadGateway:
		return "upstream failed"
	case http.StatusServiceUnavailable:
		return "no upstream instance available, retry later"
	case http.StatusGatewayTimeout:
		return "upstream timed out"
	case statusClientClosedRequest:
		return "client closed request"
	default:
		return "internal error"
	}
}
