package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

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

// newLogger returns a go-kit logger writing logfmt (or JSON) lines to w.
func newLogger(format string, w io.Writer) (log.Logger, error) {
	var logger log.Logger
	switch format {
	case "logfmt":
		logger = log.NewLogfmtLogger(w)
	case "json":
		logger = log.NewJSONLogger(w)
	default:
		return nil, fmt.Errorf("unknown log format %q (want logfmt or json)", format)
	}
	return log.With(logger, "ts", log.DefaultTimestampUTC), nil
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
