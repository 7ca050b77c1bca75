package main

import (
	"context"
	"errors"
	"net/http"

	"stringsvc/internal/lb"

	"github.com/go-kit/kit/ratelimit"
	"github.com/sony/gobreaker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	errNotFound         = errors.New("not found")
	errMethodNotAllowed = errors.New("method not allowed")
	// errUpstream marks an instance's answer that the proxy cannot pass
	// on: a 4xx other than the empty-string error, or an error body with
	// 200. It rides inside the response (the instance is fine; the request
	// is not retried) and becomes 502.
	errUpstream = errors.New("upstream failed")
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
	case errors.Is(err, lb.ErrUnavailable), errors.Is(err, lb.ErrNoEndpoints),
		errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests),
		errors.Is(err, ratelimit.ErrLimited):
		return http.StatusServiceUnavailable
	case errors.Is(err, errUpstream), errors.Is(err, lb.ErrExhausted):
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

// grpcCode maps an error to its gRPC status code. errorStatus stays the one
// table: the code is read off the HTTP status it chooses, which already
// orders the cases (a deadline inside an upstream failure is a deadline).
// A 502, every attempt failed or an instance answered what cannot be
// passed on, is UNAVAILABLE: gRPC has no "bad gateway".
func grpcCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	switch errorStatus(err) {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed:
		return codes.Unimplemented
	case statusClientClosedRequest:
		return codes.Canceled
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// grpcError turns err into a status error. As for HTTP, a server-side
// failure (5xx) or a client that went away carries statusMessage's short
// text, never the error's: the cause is logged by grpcErrorLogger.
func grpcError(err error) error {
	msg := err.Error()
	if httpStatus := errorStatus(err); hidesCause(httpStatus) {
		msg = statusMessage(httpStatus)
	}
	return status.Error(grpcCode(err), msg)
}

// hidesCause reports whether a client answered with httpStatus gets a
// generic message instead of the error's text.
func hidesCause(httpStatus int) bool {
	return httpStatus >= 500 || httpStatus == statusClientClosedRequest
}
