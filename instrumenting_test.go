package main

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestInstrumentingMiddleware(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	svc := newInstrumentingMiddleware(m)(stringService{})
	ctx := context.Background()
	for _, s := range []string{"a", "héllo", "", "b"} {
		if _, err := svc.Uppercase(ctx, s); (err != nil) != (s == "") {
			t.Fatalf("Uppercase(%q) = %v; want an error for \"\" only", s, err)
		}
	}
	counts := []string{"héllo", "", "👍🏽", "abcdefghijklmnopqrstu"}
	for _, s := range counts {
		svc.Count(ctx, s)
	}

	tests := []struct {
		method, failed string
		want           float64
	}{
		{"uppercase", "false", 3},
		{"uppercase", "true", 1},
		{"count", "false", 4},
		{"count", "true", 0},
	}
	for _, tt := range tests {
		if got := metricValue(t, reg, "stringsvc_requests_total", "method", tt.method, "error", tt.failed); got != tt.want {
			t.Errorf("stringsvc_requests_total{method=%q,error=%q} = %v; want %v", tt.method, tt.failed, got, tt.want)
		}
		count, _ := histogram(t, reg, "stringsvc_request_duration_seconds", "method", tt.method, "error", tt.failed)
		if float64(count) != tt.want {
			t.Errorf("stringsvc_request_duration_seconds_count{method=%q,error=%q} = %d; want %v", tt.method, tt.failed, count, tt.want)
		}
	}

	count, sum := histogram(t, reg, "stringsvc_count_result")
	wantSum := 0
	for _, s := range counts {
		wantSum += stringService{}.Count(ctx, s)
	}
	if count != uint64(len(counts)) || sum != float64(wantSum) {
		t.Errorf("stringsvc_count_result count, sum = %d, %v; want %d, %d", count, sum, len(counts), wantSum)
	}
}

// gatherSeries returns the series of the metric family called name whose
// labels include labelPairs (name, value, name, value...), or nil.
func gatherSeries(tb testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) *dto.Metric {
	tb.Helper()
	families, err := g.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, metric := range mf.GetMetric() {
			labels := make(map[string]string)
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labelPairs); i += 2 {
				if labels[labelPairs[i]] != labelPairs[i+1] {
					continue series
				}
			}
			return metric
		}
	}
	return nil
}

// metricValue returns the value of a counter or gauge series (see
// gatherSeries); 0 if there is no such series.
func metricValue(tb testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	tb.Helper()
	metric := gatherSeries(tb, g, name, labelPairs...)
	if c := metric.GetCounter(); c != nil {
		return c.GetValue()
	}
	return metric.GetGauge().GetValue()
}

// histogram returns the sample count and sum of a histogram series (see
// gatherSeries); zeros if there is no such series.
func histogram(tb testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) (uint64, float64) {
	tb.Helper()
	h := gatherSeries(tb, g, name, labelPairs...).GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}
