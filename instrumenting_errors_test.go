package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"stringsvc/internal/lb"
)

func TestInstrumentingMiddlewareCountsErrorsByStatus(t *testing.T) {
	t.Parallel()
	errs := []error{
		ErrEmpty, ErrEmpty,
		fmt.Errorf("%w after 3 attempts: upstream answered 500", lb.ErrExhausted),
		fmt.Errorf("%w: breaker open", lb.ErrUnavailable),
		context.DeadlineExceeded,
		context.Canceled,
		errors.New("something else"),
		nil,
	}
	reg := prometheus.NewRegistry()
	var next error
	svc := newInstrumentingMiddleware(newMetrics(reg))(fakeService{
		uppercase: func(context.Context, string) (string, error) { return "", next },
	})
	// Before any error, each status a service error maps to has its series.
	for _, code := range []string{"400", "499", "500", "502", "503", "504"} {
		if s := gatherSeries(t, reg, "stringsvc_request_errors_total", "method", "uppercase", "code", code); s.GetCounter() == nil ||
			s.GetCounter().GetValue() != 0 {
			t.Errorf("stringsvc_request_errors_total{method=uppercase,code=%q} before any request = %v; want a 0 series", code, s)
		}
	}
	for _, err := range errs {
		next = err
		if _, got := svc.Uppercase(context.Background(), "x"); !errors.Is(got, err) {
			t.Fatalf("Uppercase = %v; want %v", got, err)
		}
	}
	want := map[string]float64{"400": 2, "499": 1, "500": 1, "502": 1, "503": 1, "504": 1}
	for code, n := range want {
		if got := metricValue(t, reg, "stringsvc_request_errors_total", "method", "uppercase", "code", code); got != n {
			t.Errorf("stringsvc_request_errors_total{method=uppercase,code=%q} = %v; want %v", code, got, n)
		}
	}
	if got := metricValue(t, reg, "stringsvc_requests_total", "method", "uppercase", "error", "true"); got != 7 {
		t.Errorf("stringsvc_requests_total{method=uppercase,error=true} = %v; want 7, the errors' sum", got)
	}
}
