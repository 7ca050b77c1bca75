package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-kit/log"
	"go.opentelemetry.io/otel/trace"

	"stringsvc/internal/logfmt"
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

func mustSpanContext(tb testing.TB, traceID, spanID string, flags trace.TraceFlags, state string) trace.SpanContext {
	tb.Helper()
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		tb.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := trace.ParseTraceState(state)
	if err != nil {
		tb.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: ts})
}

// TestLoggingMiddlewareTraceIDs checks that a request's log line carries
// the IDs of its span only when the span is sampled.
func TestLoggingMiddlewareTraceIDs(t *testing.T) {
	t.Parallel()
	sampled := mustSpanContext(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", trace.FlagsSampled, "")
	unsampled := mustSpanContext(t, "4bf92f3577b34da6a3ce929d0e0e4737", "00f067aa0ba902b8", 0, "")
	tests := []struct {
		name    string
		sc      trace.SpanContext
		wantEnd string // "": no IDs
	}{
		{"sampled", sampled, " trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7\n"},
		{"not sampled", unsampled, ""},
		{"no span", trace.SpanContext{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			mw := loggingMiddleware{logger: logfmt.New(&buf), next: stringService{}}
			ctx := trace.ContextWithSpanContext(context.Background(), tt.sc)
			if _, err := mw.Uppercase(ctx, "hi"); err != nil {
				t.Fatal(err)
			}
			line := buf.String()
			if tt.wantEnd != "" && !strings.HasSuffix(line, tt.wantEnd) {
				t.Errorf("log line %q; want it to end with %q", line, tt.wantEnd)
			}
			if tt.wantEnd == "" && (strings.Contains(line, "trace_id") || strings.Contains(line, "span_id")) {
				t.Errorf("log line %q; want no trace_id or span_id", line)
			}
		})
	}
}
