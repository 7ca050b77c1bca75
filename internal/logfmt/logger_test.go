package logfmt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
)

// TestLoggerMatchesGoKit holds the fast logfmt logger to go-kit's
// output, the timestamp aside.
func TestLoggerMatchesGoKit(t *testing.T) {
	var nilErr *testError
	errEmpty := errors.New("empty string")
	tests := [][]any{
		{"method", "uppercase", "input", "hello", "output", "HELLO", "err", nil, "took", 1234 * time.Microsecond},
		{"method", "uppercase", "input", "hello, world", "output", "", "err", errEmpty, "took", time.Duration(0)},
		{"input", `a "quoted" = sign`, "n", 5, "ok", true},
		{"input", "null", "x", "tab\there", "y", "line\nbreak\r", "z", "\x01\x7f\\"},
		{"input", "héllo wörld", "bad", "\xff\xfe", "repl", "\uFFFD"},
		{"err", fmt.Errorf("wrapped: %w", errEmpty)},
		{"err", nilErr},                         // typed nil: go-kit's path
		{"addr", &net.TCPAddr{Port: 8080}},      // a Stringer: go-kit's path
		{"odd"},                                 // missing value: go-kit's path
		{"bad key", "v", 3, "int key"},          // keys go-logfmt rewrites
		{"n", int64(7), "f", 1.5, "u", uint(3)}, // other numbers: go-kit's path
	}
	for _, keyvals := range tests {
		var fast, slow bytes.Buffer
		New(&fast).Log(keyvals...)
		log.With(log.NewLogfmtLogger(&slow), "ts", log.DefaultTimestampUTC).Log(keyvals...)
		if got, want := withoutTS(t, fast.String()), withoutTS(t, slow.String()); got != want {
			t.Errorf("Log(%q):\n got %q\nwant %q", keyvals, got, want)
		}
	}
}

func withoutTS(t *testing.T, line string) string {
	t.Helper()
	ts, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(ts, "ts=") {
		t.Fatalf("line %q does not start with ts=", line)
	}
	if _, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(ts, "ts=")); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return rest
}

func BenchmarkLogfmtLogger(b *testing.B) {
	for _, impl := range []struct {
		name   string
		logger log.Logger
	}{
		{"fast", New(io.Discard)},
		{"go-kit", log.With(log.NewLogfmtLogger(io.Discard), "ts", log.DefaultTimestampUTC)},
	} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				impl.logger.Log("method", "uppercase", "input", "hello, world", "output", "HELLO, WORLD", "err", nil, "took", 1234*time.Microsecond)
			}
		})
	}
}

func TestAppendTimestampMatchesAppendFormat(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tests := []time.Time{
		time.Date(2026, 11, 21, 13, 28, 4, 0, time.UTC),         // no fraction: no dot
		time.Date(2026, 11, 21, 13, 28, 4, 1, time.UTC),         // one nanosecond
		time.Date(2026, 11, 21, 13, 28, 4, 120000000, time.UTC), // trailing zeros trimmed
		time.Date(2026, 11, 21, 13, 28, 4, 999999999, time.UTC), // all nine digits
		time.Date(2026, 11, 21, 13, 28, 4, 999999999, berlin),   // another zone: written in UTC
		time.Date(2026, 11, 21, 13, 28, 5, 500, time.UTC),       // the next second: a new prefix
		time.Date(2026, 11, 21, 13, 28, 4, 7, time.UTC),         // and back to the earlier one
		time.Date(10000, 1, 1, 0, 0, 0, 10, time.UTC),           // a five-digit year
		time.Date(-1, 12, 31, 23, 59, 59, 100, time.UTC),        // a negative year
		time.Now(), // with a monotonic reading
	}
	for _, tt := range tests {
		got := string(appendTimestamp([]byte("ts="), tt))
		want := "ts=" + tt.UTC().Format(time.RFC3339Nano)
		if got != want {
			t.Errorf("appendTimestamp(%v) = %q, want %q", tt, got, want)
		}
	}
}

func FuzzAppendTimestamp(f *testing.F) {
	f.Add(int64(1795267684), int64(0))
	f.Add(int64(1795267684), int64(123456789))
	f.Add(int64(-62135596800), int64(1))
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		tt := time.Unix(sec, nsec)
		if got, want := string(appendTimestamp(nil, tt)), tt.UTC().Format(time.RFC3339Nano); got != want {
			t.Errorf("appendTimestamp(time.Unix(%d, %d)) = %q, want %q", sec, nsec, got, want)
		}
	})
}

func TestAppendDurationMatchesString(t *testing.T) {
	tests := []time.Duration{
		0, 1, 999, time.Microsecond, 1500, 1234567, time.Millisecond, 100 * time.Millisecond,
		time.Second, 1500 * time.Millisecond, time.Minute, 61 * time.Second, time.Hour,
		time.Hour + time.Nanosecond, 90*time.Minute + 500*time.Microsecond,
		-1, -1500 * time.Microsecond, -time.Hour, math.MaxInt64, math.MinInt64,
	}
	for _, d := range tests {
		if got, want := string(appendDuration(nil, d)), d.String(); got != want {
			t.Errorf("appendDuration(%d) = %q, want %q", int64(d), got, want)
		}
	}
}

func FuzzAppendDuration(f *testing.F) {
	for _, d := range []int64{0, 1, 1234, 1234567, 1234567890, 3723000000001, -5} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d int64) {
		if got, want := string(appendDuration(nil, time.Duration(d))), time.Duration(d).String(); got != want {
			t.Errorf("appendDuration(%d) = %q, want %q", d, got, want)
		}
	})
}

// testError is an error type whose typed nil go-kit must handle.
type testError struct{}

func (*testError) Error() string { return "test error" }
