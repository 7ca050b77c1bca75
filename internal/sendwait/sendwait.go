// Package sendwait writes a message on a socket and then waits until the
// socket is readable, with no read system call in between.
//
// Request/answer traffic pays for a read that cannot succeed: right after a
// request (or a response) is written, the other side has not answered yet,
// yet Go's net package reads optimistically and only parks the goroutine on
// the poller after that read fails with EAGAIN. On a proxied request that
// is a failed system call out of five.
//
// A read cannot simply skip the optimistic try: syscall.RawConn.Read first
// resets the poller's "readable" mark, so parking without reading loses a
// wake-up that was already recorded (tried, and lost: answers then waited
// for their attempt timeout). Writing from inside RawConn.Read's callback is
// safe instead, on one condition: the peer sends nothing before it has read
// what is written. Then the mark is reset before the write, and the answer's
// readiness, which comes after it, is never lost. That holds for an HTTP/1.1
// client's kept-alive connection to a server: a server that closed it in
// the meantime answers the write with a reset, which wakes the wait too. It
// does not hold for a server's side of the connection (a client may
// pipeline or half-close at any time), which is why the inbound server
// (internal/h1) reads the usual way.
//
// It knows sockets and nothing of HTTP or of the service. Its raw calls
// need Linux (internal/rawio); elsewhere New's callers never get a raw
// connection to give it.
package sendwait

import (
	"os"
	"syscall"

	"stringsvc/internal/rawio"
)

// Writer writes and waits on one connection. It is not safe for concurrent
// use, nothing else may write to the connection while it does, and the
// peer must not send before it has read (see the package comment).
type Writer struct {
	raw      syscall.RawConn
	callback func(fd uintptr) bool // bound once: no allocation per call

	p        []byte
	then     func() bool
	wrote    bool
	written  int
	writeErr error
}

// New returns a Writer for raw.
func New(raw syscall.RawConn) *Writer {
	w := &Writer{raw: raw}
	w.callback = w.step
	return w
}

// WriteAndWait writes p (non-blocking), calls then (if not nil) once all of
// p is written, and, unless then returns false, parks until the socket is
// readable, its read deadline passes or it is closed.
//
// It returns how much of p was written. When that is less than len(p) with
// a nil error, the socket's send buffer was full and nothing was waited
// for: the caller writes the rest and reads as usual. A non-nil error is
// the write's, or the wait's (a deadline, a closed connection).
func (w *Writer) WriteAndWait(p []byte, then func() bool) (int, error) {
	w.p, w.then, w.wrote, w.written, w.writeErr = p, then, false, 0, nil
	err := w.raw.Read(w.callback)
	written, writeErr := w.written, w.writeErr
	w.p, w.then = nil, nil
	switch {
	case writeErr == syscall.EAGAIN:
		return written, nil
	case writeErr != nil:
		return written, os.NewSyscallError("write", writeErr)
	}
	return written, err
}

// step is RawConn.Read's callback: the first call writes, a later one means
// the socket is readable. Returning false parks until it is.
func (w *Writer) step(fd uintptr) bool {
	if w.wrote {
		return true
	}
	w.wrote = true
	for {
		n, errno := rawio.Write(fd, w.p)
		if n > 0 {
			w.written = n
		}
		if errno != syscall.EINTR {
			if errno != 0 {
				w.writeErr = errno
			}
			break
		}
	}
	if w.writeErr != nil || w.written < len(w.p) {
		return true // nothing to wait for: the caller finishes the usual way
	}
	return w.then != nil && !w.then()
}
