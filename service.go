package main

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"
)

// StringService provides operations on strings. Every method takes the
// request's context first, so a deadline or a client disconnect reaches a
// proxied call (go-kit's stringsvc3 keeps a background context in its proxy
// instead, which no request can cancel).
type StringService interface {
	Uppercase(ctx context.Context, s string) (string, error)
	Count(ctx context.Context, s string) int
}

// ErrEmpty is returned when the input string is empty. It is a business
// error: it travels inside the response, so breakers and retries never count
// it as a failure of the instance that returned it.
var ErrEmpty = errors.New("empty string")

// stringService is the concrete StringService.
type stringService struct{}

// Uppercase returns s with all Unicode letters mapped to upper case.
func (stringService) Uppercase(_ context.Context, s string) (string, error) {
	if s == "" {
		return "", ErrEmpty
	}
	return strings.ToUpper(s), nil
}

// Count returns the number of Unicode code points in s (stringsvc3 counts bytes).
func (stringService) Count(_ context.Context, s string) int {
	return utf8.RuneCountInString(s)
}

// ServiceMiddleware is a chainable behaviour modifier for StringService.
type ServiceMiddleware func(StringService) StringService
