package main

import (
	"bufio"
	"context"
	"encoding"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-kit/log"
)

// loggingMiddleware logs one line per call: method, input, output, err, took.
type loggingMiddleware struct {
	logger log.Logger
	next   StringService
}

func (mw loggingMiddleware) Uppercase(ctx context.Context, s string) (output string, err error) {
	defer func(begin time.Time) {
		mw.logger.Log(
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
		mw.logger.Log(
			"method", "count",
			"input", truncate(s),
			"n", n,
			"took", time.Since(begin),
		)
	}(time.Now())
	return mw.next.Count(ctx, s)
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
// each with a "ts" first.
func newLogger(format string, w io.Writer) (log.Logger, error) {
	switch format {
	case "logfmt":
		return logfmtLogger{w: w, slow: log.With(log.NewLogfmtLogger(w), "ts", log.DefaultTimestampUTC)}, nil
	case "json":
		return log.With(log.NewJSONLogger(w), "ts", log.DefaultTimestampUTC), nil
	default:
		return nil, fmt.Errorf("unknown log format %q (want logfmt or json)", format)
	}
}

// logfmtLogger writes the lines log.With(log.NewLogfmtLogger(w), "ts",
// log.DefaultTimestampUTC) writes, byte for byte, at a third of the cost:
// it appends the values the service logs (strings, errors, durations,
// integers, booleans, nil) straight into a recycled buffer, where go-kit
// goes through a bound context, a timestamp Valuer, a TextMarshaler and
// go-logfmt's reflection. A line with any other key or value is handed to
// slow, go-kit's own. Logging one line per request was the largest cost
// left in the direct scenario (BENCHMARKS.md); TestLogfmtLoggerMatchesGoKit
// holds the two to the same output.
type logfmtLogger struct {
	w    io.Writer
	slow log.Logger
}

var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func (l logfmtLogger) Log(keyvals ...any) error {
	if len(keyvals)%2 != 0 {
		return l.slow.Log(keyvals...)
	}
	bp := lineBuffers.Get().(*[]byte)
	defer lineBuffers.Put(bp)
	b := append((*bp)[:0], "ts="...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	for i := 0; i < len(keyvals); i += 2 {
		key, ok := keyvals[i].(string)
		if !ok || !plainLogfmtKey(key) {
			return l.slow.Log(keyvals...)
		}
		b = append(append(append(b, ' '), key...), '=')
		if b, ok = appendLogfmtValue(b, keyvals[i+1]); !ok {
			return l.slow.Log(keyvals...)
		}
	}
	b = append(b, '\n')
	*bp = b
	_, err := l.w.Write(b)
	return err
}

// plainLogfmtKey reports whether go-logfmt writes key as it is.
func plainLogfmtKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c == '=' || c == '"' || c >= utf8.RuneSelf {
			return false
		}
	}
	return key != ""
}

// appendLogfmtValue appends v as go-logfmt formats it, for the types it
// knows; ok is false for any other.
func appendLogfmtValue(b []byte, v any) (_ []byte, ok bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendLogfmtString(b, v), true
	case time.Duration: // a fmt.Stringer to go-logfmt
		return appendLogfmtString(b, v.String()), true
	case error:
		if _, marshals := v.(encoding.TextMarshaler); marshals {
			return b, false // go-logfmt prefers MarshalText
		}
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return b, false // go-logfmt writes null where Error would panic
		}
		return appendLogfmtString(b, v.Error()), true
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case bool:
		return strconv.AppendBool(b, v), true
	}
	return b, false
}

// appendLogfmtString quotes s when go-logfmt does: when it is "null" or
// holds a space, a control character, '=', '"' or invalid UTF-8.
func appendLogfmtString(b []byte, s string) []byte {
	if s == "null" {
		return append(b, `"null"`...)
	}
	if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == '=' || r == '"' || r == utf8.RuneError }) < 0 {
		return append(b, s...)
	}
	return appendQuoted(b, s, true)
}

// logWriter batches log lines in memory and writes them out every interval
// and on Close, instead of making one write(2) per line while the request
// waits. go-kit's loggers issue one Write per line, so lines never interleave.
// A crash loses at most one interval of lines; Close loses none.
type logWriter struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newLogWriter(w io.Writer, interval time.Duration) *logWriter {
	lw := &logWriter{
		buf:  bufio.NewWriterSize(w, 64<<10),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go lw.flushEvery(interval)
	return lw
}

func (lw *logWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.buf.Write(p)
}

// Flush writes out everything buffered so far.
func (lw *logWriter) Flush() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.buf.Flush()
}

// Close stops the background flushing and writes out what is left. Writes
// after Close are still accepted and reach w at the next Flush.
func (lw *logWriter) Close() error {
	close(lw.stop)
	<-lw.done
	return lw.Flush()
}

func (lw *logWriter) flushEvery(interval time.Duration) {
	defer close(lw.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			lw.Flush() // nowhere to report a failed log write
		case <-lw.stop:
			return
		}
	}
}
