package logfmt

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Writer batches log lines in memory and writes them out every interval
// and on Close, instead of making one write(2) per line while the request
// waits. go-kit's loggers issue one Write per line, so lines never interleave.
// A crash loses at most one interval of lines; Close loses none.
type Writer struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// NewWriter returns a Writer to w that writes out every interval.
func NewWriter(w io.Writer, interval time.Duration) *Writer {
	lw := &Writer{
		buf:  bufio.NewWriterSize(w, 64<<10),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go lw.flushEvery(interval)
	return lw
}

func (lw *Writer) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.buf.Write(p)
}

// Flush writes out everything buffered so far.
func (lw *Writer) Flush() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.buf.Flush()
}

// Close stops the background flushing and writes out what is left. Writes
// after Close are still accepted and reach w at the next Flush.
func (lw *Writer) Close() error {
	close(lw.stop)
	<-lw.done
	return lw.Flush()
}

func (lw *Writer) flushEvery(interval time.Duration) {
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
