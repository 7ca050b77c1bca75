package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"stringsvc/internal/lb"

	"github.com/go-kit/kit/ratelimit"
	"github.com/go-kit/log"
	"github.com/sony/gobreaker"
)

func TestErrorStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give error
		want int
	}{
		{name: "empty", give: ErrEmpty, want: http.StatusBadRequest},
		{name: "wrapped empty", give: fmt.Errorf("uppercase: %w", ErrEmpty), want: http.StatusBadRequest},
		{name: "bad request", give: badRequestError{err: io.EOF}, want: http.StatusBadRequest},
		{name: "wrapped bad request", give: fmt.Errorf("decode: %w", badRequestError{err: io.ErrUnexpectedEOF}),
			want: http.StatusBadRequest},
		{name: "body too large", give: &http.MaxBytesError{Limit: 10}, want: http.StatusRequestEntityTooLarge},
		{name: "wrapped body too large", give: fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 10}),
			want: http.StatusRequestEntityTooLarge},
		{name: "not found", give: errNotFound, want: http.StatusNotFound},
		{name: "method not allowed", give: errMethodNotAllowed, want: http.StatusMethodNotAllowed},
		{name: "canceled", give: context.Canceled, want: statusClientClosedRequest},
		{name: "wrapped canceled", give: fmt.Errorf("proxy uppercase after 1 attempts: %w", context.Canceled),
			want: statusClientClosedRequest},
		{name: "deadline", give: context.DeadlineExceeded, want: http.StatusGatewayTimeout},
		{name: "deadline inside upstream", give: fmt.Errorf("%w after 2 attempts: %w", lb.ErrExhausted, context.DeadlineExceeded),
			want: http.StatusGatewayTimeout},
		{name: "unavailable", give: lb.ErrUnavailable, want: http.StatusServiceUnavailable},
		{name: "unavailable with refusal", give: fmt.Errorf("%w: %w", lb.ErrUnavailable, ratelimit.ErrLimited),
			want: http.StatusServiceUnavailable},
		{name: "no endpoints", give: lb.ErrNoEndpoints, want: http.StatusServiceUnavailable},
		{name: "breaker open", give: gobreaker.ErrOpenState, want: http.StatusServiceUnavailable},
		{name: "breaker half-open busy", give: gobreaker.ErrTooManyRequests, want: http.StatusServiceUnavailable},
		{name: "limited", give: ratelimit.ErrLimited, want: http.StatusServiceUnavailable},
		{name: "upstream", give: errUpstream, want: http.StatusBadGateway},
		{name: "upstream after attempts", give: fmt.Errorf("%w after 3 attempts: %w", lb.ErrExhausted, errors.New("upstream answered 500")),
			want: http.StatusBadGateway},
		{name: "other", give: errors.New("boom"), want: http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorStatus(tt.give); got != tt.want {
				t.Errorf("errorStatus(%v) = %d; want %d", tt.give, got, tt.want)
			}
		})
	}
}

// TestErrorEncoderHidesServerErrors checks that a 5xx body carries a generic
// message, never the error's text, while a 4xx body explains the mistake.
func TestErrorEncoderHidesServerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		give           error
		wantStatus     int
		wantErr        string
		wantRetryAfter string
	}{
		{name: "bad request", give: ErrEmpty, wantStatus: http.StatusBadRequest, wantErr: "empty string"},
		{name: "upstream", give: fmt.Errorf("%w: dial tcp 10.0.0.1:80: secret", errUpstream),
			wantStatus: http.StatusBadGateway, wantErr: statusMessage(http.StatusBadGateway)},
		{name: "unavailable", give: fmt.Errorf("%w: secret", lb.ErrUnavailable),
			wantStatus: http.StatusServiceUnavailable, wantErr: statusMessage(http.StatusServiceUnavailable),
			wantRetryAfter: "1"},
		{name: "timeout", give: fmt.Errorf("secret: %w", context.DeadlineExceeded),
			wantStatus: http.StatusGatewayTimeout, wantErr: statusMessage(http.StatusGatewayTimeout)},
		{name: "internal", give: errors.New("secret"),
			wantStatus: http.StatusInternalServerError, wantErr: statusMessage(http.StatusInternalServerError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			var logged bytes.Buffer
			errorEncoder{errorLog: log.NewLogfmtLogger(&logged)}.encode(context.Background(), tt.give, rec)
			var body errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("decode body %q: %v", rec.Body, err)
			}
			if rec.Code != tt.wantStatus || body.Err != tt.wantErr {
				t.Errorf("encode(%v) = %d %q; want %d %q", tt.give, rec.Code, body.Err, tt.wantStatus, tt.wantErr)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("encode(%v) body = %q; want no internal details", tt.give, rec.Body)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("encode(%v) Retry-After = %q; want %q", tt.give, got, tt.wantRetryAfter)
			}
			// The cause of a 5xx is logged, with or without request logs.
			if wantLogged := tt.wantStatus >= 500; strings.Contains(logged.String(), tt.give.Error()) != wantLogged {
				t.Errorf("encode(%v) logged %q; want the cause logged: %v", tt.give, logged.String(), wantLogged)
			}
		})
	}
}
