package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
)

func TestLoggingMiddleware(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string // "uppercase" or "count"
		give       string
		wantPrefix string
	}{
		{name: "uppercase", method: "uppercase", give: "hello",
			wantPrefix: "method=uppercase input=hello output=HELLO err=null took="},
		{name: "uppercase error", method: "uppercase", give: "",
			wantPrefix: `method=uppercase input= output= err="empty string" took=`},
		{name: "count", method: "count", give: "héllo",
			wantPrefix: "method=count input=héllo n=5 took="},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			svc := loggingMiddleware{logger: log.NewLogfmtLogger(&buf), next: stringService{}}
			// Logging changes no result.
			switch tt.method {
			case "uppercase":
				got, err := svc.Uppercase(ctx, tt.give)
				want, wantErr := stringService{}.Uppercase(ctx, tt.give)
				if got != want || err != wantErr {
					t.Errorf("Uppercase(%q) = %q, %v; want %q, %v", tt.give, got, err, want, wantErr)
				}
			case "count":
				if got, want := svc.Count(ctx, tt.give), (stringService{}).Count(ctx, tt.give); got != want {
					t.Errorf("Count(%q) = %d; want %d", tt.give, got, want)
				}
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.wantPrefix) {
				t.Errorf("log = %q; want one line starting %q", buf.String(), tt.wantPrefix)
			}
		})
	}
}

func TestLoggingMiddlewareTruncatesLongInput(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	svc := loggingMiddleware{logger: log.NewLogfmtLogger(&buf), next: stringService{}}
	in := strings.Repeat("a", 10000)
	if _, err := svc.Uppercase(context.Background(), in); err != nil {
		t.Fatalf("Uppercase(%d bytes) = %v; want nil error", len(in), err)
	}
	line := buf.String()
	wantIn := `input="` + strings.Repeat("a", maxLoggedRunes) + `…(10000 bytes)" `
	wantOut := `output="` + strings.Repeat("A", maxLoggedRunes) + `…(10000 bytes)" `
	if !strings.Contains(line, wantIn) || !strings.Contains(line, wantOut) || len(line) > 500 {
		t.Errorf("log line = %q (%d bytes); want %q and %q, under 500 bytes", line, len(line), wantIn, wantOut)
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "empty", give: "", want: ""},
		{name: "short", give: "hello", want: "hello"},
		{name: "at the limit", give: strings.Repeat("a", maxLoggedRunes), want: strings.Repeat("a", maxLoggedRunes)},
		{name: "one over", give: strings.Repeat("a", maxLoggedRunes+1),
			want: strings.Repeat("a", maxLoggedRunes) + fmt.Sprintf("…(%d bytes)", maxLoggedRunes+1)},
		// Longer than the limit in bytes, not in code points: kept whole.
		{name: "multibyte at the limit", give: strings.Repeat("é", maxLoggedRunes),
			want: strings.Repeat("é", maxLoggedRunes)},
		// Cut on a code point boundary, never inside é.
		{name: "multibyte over", give: strings.Repeat("é", maxLoggedRunes+10),
			want: strings.Repeat("é", maxLoggedRunes) + fmt.Sprintf("…(%d bytes)", 2*(maxLoggedRunes+10))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := truncate(tt.give); got != tt.want {
				t.Errorf("truncate(%q) = %q; want %q", tt.give, got, tt.want)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLogWriterCloseLosesNothing(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	// An interval no test outlives: only a full buffer and Close write out.
	lw := newLogWriter(&out, time.Hour)
	var want strings.Builder
	for i := range 5000 { // about 4 times the writer's 64 KiB buffer
		line := fmt.Sprintf("msg=line i=%d\n", i)
		want.WriteString(line)
		if n, err := lw.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", line, n, err, len(line))
		}
	}
	if err := lw.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}
	if got := out.String(); got != want.String() {
		t.Errorf("after Close, got %d bytes (%d lines); want %d bytes (%d lines)",
			len(got), strings.Count(got, "\n"), want.Len(), strings.Count(want.String(), "\n"))
	}

	// Written after Close: accepted, out at the next Flush.
	late := "msg=late\n"
	if _, err := lw.Write([]byte(late)); err != nil {
		t.Fatalf("Write after Close = %v; want nil", err)
	}
	if err := lw.Flush(); err != nil {
		t.Fatalf("Flush() = %v; want nil", err)
	}
	if got := out.String(); !strings.HasSuffix(got, late) {
		t.Errorf("after Write and Flush past Close, output ends %q; want %q", got[max(0, len(got)-20):], late)
	}
}

// TestLogWriterFlushesInBackground checks that a line reaches the underlying
// writer without Close, within a deadline far above the interval.
func TestLogWriterFlushesInBackground(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	lw := newLogWriter(&out, 5*time.Millisecond)
	t.Cleanup(func() {
		if err := lw.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
	})
	line := "msg=hello\n"
	if _, err := lw.Write([]byte(line)); err != nil {
		t.Fatalf("Write(%q) = %v; want nil", line, err)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for out.String() != line {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("output after 10s = %q; want %q", out.String(), line)
		}
	}
}

func TestLogWriterConcurrentLinesDoNotInterleave(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	lw := newLogWriter(&out, time.Millisecond) // flushes race with the writers
	logger := log.NewLogfmtLogger(lw)
	const writers, perWriter = 8, 300
	payload := strings.Repeat("x", 200) // lines long enough to straddle buffer flushes
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := logger.Log("writer", w, "i", i, "payload", payload); err != nil {
					t.Errorf("Log() = %v; want nil", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := lw.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}

	want := make(map[string]bool, writers*perWriter)
	for w := range writers {
		for i := range perWriter {
			want[fmt.Sprintf("writer=%d i=%d payload=%s", w, i, payload)] = true
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != writers*perWriter {
		t.Errorf("got %d lines; want %d", len(lines), writers*perWriter)
	}
	for _, line := range lines {
		if !want[line] {
			t.Fatalf("line %q is not one that was logged (interleaved or duplicated)", line)
		}
		delete(want, line)
	}
	if len(want) > 0 {
		t.Errorf("%d lines missing", len(want))
	}
}

// TestLogfmtLoggerMatchesGoKit holds the fast logfmt logger to go-kit's
// output, the timestamp aside.
func TestLogfmtLoggerMatchesGoKit(t *testing.T) {
	var nilErr *badRequestError
	tests := [][]any{
		{"method", "uppercase", "input", "hello", "output", "HELLO", "err", nil, "took", 1234 * time.Microsecond},
		{"method", "uppercase", "input", "hello, world", "output", "", "err", ErrEmpty, "took", time.Duration(0)},
		{"input", `a "quoted" = sign`, "n", 5, "ok", true},
		{"input", "null", "x", "tab\there", "y", "line\nbreak\r", "z", "\x01\x7f\\"},
		{"input", "héllo wörld", "bad", "\xff\xfe", "repl", "\uFFFD"},
		{"err", fmt.Errorf("wrapped: %w", ErrEmpty)},
		{"err", nilErr},                         // typed nil: go-kit's path
		{"addr", &net.TCPAddr{Port: 8080}},      // a Stringer: go-kit's path
		{"odd"},                                 // missing value: go-kit's path
		{"bad key", "v", 3, "int key"},          // keys go-logfmt rewrites
		{"n", int64(7), "f", 1.5, "u", uint(3)}, // other numbers: go-kit's path
	}
	for _, keyvals := range tests {
		var fast, slow bytes.Buffer
		fastLogger, err := newLogger("logfmt", &fast)
		if err != nil {
			t.Fatal(err)
		}
		fastLogger.Log(keyvals...)
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
		{"fast", logfmtLogger{w: io.Discard, slow: log.NewNopLogger()}},
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
