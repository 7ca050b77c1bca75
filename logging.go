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
	"sync/atomic"
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
		mw.log(
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
		mw.log(
			"method", "count",
			"input", truncate(s),
			"n", n,
			"took", time.Since(begin),
		)
	}(time.Now())
	return mw.next.Count(ctx, s)
}

// log is mw.logger.Log(keyvals...) through a recycled slice. go-kit's
// Logger contract forbids a logger to keep keyvals or its elements without
// copying them, so the slice can carry the next line; keyvals itself then
// stays on the caller's stack. One allocation of four per line, and the
// largest (160 bytes).
func (mw loggingMiddleware) log(keyvals ...any) {
	kv := keyvalSlices.Get().(*[]any)
	*kv = append((*kv)[:0], keyvals...)
	mw.logger.Log(*kv...)
	clear(*kv) // let the values go
	keyvalSlices.Put(kv)
}

var keyvalSlices = sync.Pool{New: func() any { kv := make([]any, 0, 16); return &kv }}

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
	b = appendTimestamp(b, time.Now())
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

// appendTimestamp appends t in UTC as t.UTC().AppendFormat(b,
// time.RFC3339Nano) does, at a fraction of the cost: the part up to the
// second is formatted once per second and kept, and only the fraction is
// written for each line (AppendFormat was 2% of a backend's CPU).
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	sec := t.Unix()
	p := timestampPrefix.Load()
	if p == nil || p.sec != sec {
		p = &secondPrefix{sec: sec}
		p.text = t.AppendFormat(p.text, "2006-01-02T15:04:05")
		timestampPrefix.Store(p)
	}
	b = append(b, p.text...)
	// Nine digits, trailing zeros left out, as with ".999999999".
	return append(appendFraction(b, uint64(t.Nanosecond()), 9), 'Z')
}

// secondPrefix is a timestamp's text up to its second.
type secondPrefix struct {
	sec  int64
	text []byte
}

var timestampPrefix atomic.Pointer[secondPrefix]

// plainLogfmtKey reports whether go-logfmt writes key as it is.
func plainLogfmtKey(key string) bool {
	switch key {
	case "method", "input", "output", "err", "took", "n", "msg": // the usual ones, without the scan
		return true
	}
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
	case time.Duration: // a fmt.Stringer to go-logfmt, which needs no quotes
		return appendDuration(b, v), true
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
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf { // the rest rune by rune
			if strings.IndexFunc(s[i:], needsLogfmtQuotes) >= 0 {
				return appendQuoted(b, s, true)
			}
			break
		} else if needsLogfmtQuotes(rune(c)) {
			return appendQuoted(b, s, true)
		}
	}
	return append(b, s...)
}

// needsLogfmtQuotes reports whether go-logfmt quotes a value holding r.
func needsLogfmtQuotes(r rune) bool {
	return r <= ' ' || r == '=' || r == '"' || r == utf8.RuneError
}

// appendDuration appends d as d.String() writes it ("1.234ms", "1h2m3s")
// without the string String allocates.
func appendDuration(b []byte, d time.Duration) []byte {
	if d == 0 {
		return append(b, "0s"...)
	}
	u := uint64(d)
	if d < 0 {
		b = append(b, '-')
		u = -u
	}
	switch {
	case u < uint64(time.Microsecond):
		return append(strconv.AppendUint(b, u, 10), "ns"...)
	case u < uint64(time.Millisecond):
		return append(appendDecimal(b, u, 3), "µs"...)
	case u < uint64(time.Second):
		return append(appendDecimal(b, u, 6), "ms"...)
	}
	secs := u / uint64(time.Second)
	if h := secs / 3600; h > 0 {
		b = append(strconv.AppendUint(b, h, 10), 'h')
	}
	if m := secs / 60; m > 0 {
		b = append(strconv.AppendUint(b, m%60, 10), 'm')
	}
	return append(appendDecimal(b, u%uint64(time.Minute), 9), 's')
}

// appendDecimal appends u / 10^digits with its fraction, trailing zeros
// (and a bare point) left out.
func appendDecimal(b []byte, u uint64, digits int) []byte {
	unit := uint64(1)
	for range digits {
		unit *= 10
	}
	return appendFraction(strconv.AppendUint(b, u/unit, 10), u%unit, digits)
}

// appendFraction appends frac, a fraction of digits decimal places (frac <
// 10^digits), as "." and its digits without the trailing zeros, or nothing
// when it is 0.
func appendFraction(b []byte, frac uint64, digits int) []byte {
	if frac == 0 {
		return b
	}
	for frac%10 == 0 {
		frac /= 10
		digits--
	}
	unit := uint64(1)
	for ; digits > 1; digits-- {
		unit *= 10
	}
	b = append(b, '.')
	for ; unit > 0; unit /= 10 {
		b = append(b, byte('0'+frac/unit%10))
	}
	return b
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
