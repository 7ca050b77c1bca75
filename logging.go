package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-kit/log"
	"go.opentelemetry.io/otel/trace"

	"stringsvc/internal/logfmt"
)

// loggingMiddleware logs one line per call: method, input, output, err, took.
type loggingMiddleware struct {
	logger log.Logger
	next   StringService
}

func (mw loggingMiddleware) Uppercase(ctx context.Context, s string) (output string, err error) {
	defer func(begin time.Time) {
		mw.log(ctx,
			"method", "uppercase",
			"input", truncate(s),
			"output", truncate(output),
			"err", err,
			"took", time.Since(begin),
		)
	}(time.Now())
	return mw.next.Uppercase(ctx, s)
}

func (mw loggingMiddleware) Count(ctx context.Context, s string) (n int) {
	defer func(begin time.Time) {
		mw.log(ctx,
			"method", "count",
			"input", truncate(s),
			"n", n,
			"took", time.Since(begin),
		)
	}(time.Now())
	return mw.next.Count(ctx, s)
}

// log is mw.logger.Log(keyvals...) through a recycled slice, with the
// trace and span IDs of ctx's span when it is sampled. go-kit's
// Logger contract forbids a logger to keep keyvals or its elements without
// copying them, so the slice can carry the next line; keyvals itself then
// stays on the caller's stack. One allocation of four per line, and the
// largest (160 bytes).
func (mw loggingMiddleware) log(ctx context.Context, keyvals ...any) {
	kv := keyvalSlices.Get().(*[]any)
	*kv = appendTraceIDs(ctx, append((*kv)[:0], keyvals...))
	mw.logger.Log(*kv...)
	clear(*kv) // let the values go
	keyvalSlices.Put(kv)
}

var keyvalSlices = sync.Pool{New: func() any { kv := make([]any, 0, 16); return &kv }}

// appendTraceIDs appends "trace_id" and "span_id" with the IDs of ctx's
// span when it is sampled, so that a request's log lines and its trace lead
// to each other; otherwise keyvals as they are, for the cost of a context
// lookup.
func appendTraceIDs(ctx context.Context, keyvals []any) []any {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return keyvals
	}
	return append(keyvals, "trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String())
}

// maxLoggedRunes bounds a logged value: a 1 MiB input must not become a
// 1 MiB log line.
const maxLoggedRunes = 64

// truncate shortens s to maxLoggedRunes code points, marking the cut.
func truncate(s string) string {
	if len(s) <= maxLoggedRunes {
		return s
	}
	n := 0
	for i := range s {
		if n == maxLoggedRunes {
			return s[:i] + fmt.Sprintf("…(%d bytes)", len(s))
		}
		n++
	}
	return s
}

// newLogger returns a go-kit logger writing logfmt (or JSON) lines to w,
// each with a "ts" first. The logfmt one writes go-kit's bytes through a
// faster encoder (internal/logfmt).
func newLogger(format string, w io.Writer) (log.Logger, error) {
	switch format {
	case "logfmt":
		return logfmt.New(w), nil
	case "json":
		return log.With(log.NewJSONLogger(w), "ts", log.DefaultTimestampUTC), nil
	default:
		return nil, fmt.Errorf("unknown log format %q (want logfmt or json)", format)
	}
}
