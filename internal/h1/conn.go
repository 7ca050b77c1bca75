package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"stringsvc/internal/rawio"
)

// conn is one client connection, served by one goroutine.
type conn struct {
	s          *Server
	nc         net.Conn
	rw         io.ReadWriter   // nc's Read and Write as raw system calls (internal/rawio)
	raw        syscall.RawConn // nil when nc is not a TCP connection: no disconnect watch
	remoteAddr string
	accepted   time.Time // the first request's read deadlines count from it
	br         *bufio.Reader
	out        []byte      // the response being built, written with one Write
	header     http.Header // the response's, reused
	bodyBuf    []byte      // the body held back until the handler returns
	idle       bool        // guarded by s.mu
	drainClose bool        // the client may still be sending: closeWriteAndDrain before the close

	// The disconnect watch of the request in flight (see Server.sweep).
	watchArmed bool // the serve loop's own copy of armedAt != zero
	watchDone  chan struct{}
	watchMu    sync.Mutex
	armedAt    time.Time // guarded by watchMu: the armed request's start, or zero
	watching   bool      // guarded by watchMu: watchDisconnect was started
	stopping   bool      // guarded by watchMu: stopWatch has taken the deadline back
	reqStart   time.Time // the request in flight's start

	// ctx is the context of every request on the connection, cancelled when
	// the client goes away or the connection ends. One per connection and
	// not one per request, as net/http has, which also cancels it when the
	// handler returns: that costs four allocations per request, and a
	// handler's work is over when it returns anyway.
	ctx    context.Context
	cancel context.CancelFunc
}

// maxBufferedBody is how much of a response is held back to be sent with a
// Content-Length in one write; a larger one is sent in chunks as it comes.
const maxBufferedBody = 64 << 10

// maxDiscard is how much of a body the handler left unread is read and
// dropped to keep the connection; past it the connection is closed.
const maxDiscard = 256 << 10

// What closeWriteAndDrain reads and waits for at most before it closes a
// connection whose client may still be sending. The time is net/http's
// rstAvoidanceDelay. The bytes let a client that writes a request of a few
// MB before it reads have its 413 (issue 9); past them the client sends
// more than any request here needs, and reading it would only cost CPU.
const (
	drainTimeout = 500 * time.Millisecond
	drainBytes   = 8 << 20
)

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, remoteAddr: nc.RemoteAddr().String(), accepted: time.Now()}
	c.rw = rawio.New(nc)
	if rc, ok := c.rw.(*rawio.Conn); ok {
		c.raw = rc.Raw()
	}
	c.br = bufio.NewReaderSize(c.rw, 4096)
	c.ctx, c.cancel = context.WithCancel(s.baseCtx)
	c.watchDone = make(chan struct{}, 1)
	return c
}

func (c *conn) serve() {
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logf("h1: panic serving %s: %v\n%s", c.remoteAddr, v, buf)
		}
		c.stopWatch()
		c.cancel()
		if c.drainClose {
			c.closeWriteAndDrain()
		}
		c.nc.Close()
		c.s.untrackConn(c)
	}()
	first := true
	for {
		if !c.waitForRequest(first) {
			return
		}
		if !c.serveOne(first) {
			return
		}
		first = false
	}
}

// waitForRequest waits, as an idle connection, until the next request's
// first byte is there. It reports false when the connection should end.
func (c *conn) waitForRequest(first bool) bool {
	if c.br.Buffered() > 0 { // pipelined: the next request is already here
		return !c.s.closing.Load()
	}
	if first { // a new connection gets the header timeout, as with net/http
		c.setReadDeadline(c.accepted, c.s.readHeaderTimeout())
	} else {
		c.setReadDeadline(time.Now(), c.s.idleTimeout())
	}
	if !c.s.setIdle(c, true) {
		return false
	}
	if !first {
		// Let the other connections' goroutines run first. Under load the
		// client's next request has then arrived, and the read below
		// succeeds instead of failing with EAGAIN and parking on the
		// poller (measured: 0.3 → 0.04 failed reads per request); an
		// idle process gets its turn back at once.
		runtime.Gosched()
	}
	_, err := c.br.Peek(1)
	return c.s.setIdle(c, false) && err == nil
}

// serveOne reads one request, the connection's first or a later one, runs
// the handler and writes the response. It reports whether the connection
// can carry another request.
func (c *conn) serveOne(first bool) (keep bool) {
	start := time.Now()
	c.reqStart = start
	// The read deadlines count from the accept for the first request, as
	// net/http's do: a client silent before its first byte has no more
	// time for its head (issue 9: 9 s instead of 5). Later requests count
	// from their first byte, after waiting for it under IdleTimeout.
	from := start
	if first {
		from = c.accepted
	}
	// A read deadline matters only to a read that reaches the socket. When
	// the head (or the body) is all in the buffer already, as it usually
	// is, setting one would cost a runtime timer update for nothing: three
	// updates per request were 2.4% of a backend's CPU.
	headHere := headEnd(c.br) >= 0
	if !headHere {
		c.setReadDeadline(from, c.s.readHeaderTimeout())
	}
	maxHeader := c.s.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	req, err := readRequest(c.br, maxHeader)
	if err != nil {
		c.refuse(err)
		return false
	}
	bodyHere := req.body == bodyNone ||
		(req.body == bodyLength && !req.expectContinue && int64(c.br.Buffered()) >= req.length)
	if !bodyHere {
		c.setReadDeadline(from, c.s.ReadTimeout)
	}
	if d := c.s.WriteTimeout; d > 0 {
		headersEnd := start
		if !headHere {
			headersEnd = time.Now()
		}
		c.nc.SetWriteDeadline(headersEnd.Add(d))
	}

	req.RemoteAddr = c.remoteAddr
	w := &req.resp
	// The header map is the connection's, emptied for each response: a
	// handler may not use its ResponseWriter once it returned.
	if c.header == nil {
		c.header = make(http.Header, 4)
	}
	clear(c.header)
	*w = response{c: c, req: req, header: c.header, start: start}
	w.body.c, w.body.w, w.body.left = c, w, req.length
	if req.body == bodyNone {
		req.Body = http.NoBody
		c.armWatch()
	} else {
		req.Body = &w.body
	}
	// WithContext copies the request; the copy goes back in place, so the
	// compiler keeps it off the heap.
	*req.Request = *req.Request.WithContext(c.ctx)
	w.serve()
	// Drain before stopping the watch: reaching the body's end arms it,
	// and an armed watch must not outlive its request.
	keep = !w.streaming || w.body.drain()
	c.stopWatch()
	keep = keep && !w.closeAfter && w.keepAlive()
	// What the client sent beyond the answered request is unread: the rest
	// of the body, or requests it pipelined.
	c.drainClose = !keep && w.err == nil && (w.body.unread() || c.br.Buffered() > 0)
	return keep
}

// setReadDeadline sets the read deadline to from+d, or none if d is not
// positive.
func (c *conn) setReadDeadline(from time.Time, d time.Duration) {
	if d > 0 {
		c.nc.SetReadDeadline(from.Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
}

// refuse answers a request that could not be read, when the failure was the
// request's and not the connection's.
func (c *conn) refuse(err error) {
	var re *requestError
	if !errors.As(err, &re) {
		return // EOF, reset or timeout: nobody to answer
	}
	c.out = fmt.Appendf(c.out[:0], "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", re.status, http.StatusText(re.status), len(re.msg), re.msg)
	if d := c.s.WriteTimeout; d > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(d))
	}
	_, err = c.rw.Write(c.out)
	c.drainClose = err == nil // the rest of the request is unread
}

// closeWriteAndDrain ends a connection whose client may still be sending
// without resetting it. Closing a socket with unread bytes makes the kernel
// answer with RST instead of FIN, and a client still writing then sees its
// write fail and may never read the answer (issue 9). As net/http's
// closeWriteAndWait, it half-closes, so that the client reads the answer
// and then the end of the stream, and gives the client drainTimeout to do
// so before the close. Unlike it, it reads and drops what the client sends
// meanwhile, so that the client's write can finish, and it ends as soon as
// the client closes; after drainBytes it stops reading and only waits. It
// ends at once when the server is closed.
func (c *conn) closeWriteAndDrain() {
	tc, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || tc.CloseWrite() != nil {
		return
	}
	deadline := time.Now().Add(drainTimeout)
	if c.nc.SetReadDeadline(deadline) != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for n := 0; n < drainBytes; {
		m, err := c.rw.Read(buf)
		if err != nil {
			return // the end of the stream, the deadline or Close
		}
		n += m
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.s.baseCtx.Done():
	}
}

// armWatch makes the request in flight a candidate for the disconnect
// watch, once its body has been read: the server's sweep starts the watch
// if the request is still running DisconnectCheckDelay after its start.
// Arming and disarming cost a lock each; a timer per request, as before,
// cost 2.5% of a backend's CPU.
func (c *conn) armWatch() {
	if c.raw == nil || c.watchArmed {
		return
	}
	c.watchArmed = true
	c.watchMu.Lock()
	c.armedAt = c.reqStart
	c.watchMu.Unlock()
	c.s.startSweep()
}

// stopWatch ends the watch of the request that just finished, waiting for
// it to let go of the connection if it had started.
func (c *conn) stopWatch() {
	if !c.watchArmed {
		return
	}
	c.watchArmed = false
	c.watchMu.Lock()
	c.armedAt = time.Time{}
	if !c.watching {
		c.watchMu.Unlock()
		return
	}
	// It is running or about to: make its wait fail, then wait for it.
	c.stopping = true
	c.nc.SetReadDeadline(aLongTimeAgo)
	c.watchMu.Unlock()
	<-c.watchDone
	c.watchMu.Lock()
	c.watching, c.stopping = false, false
	c.watchMu.Unlock()
}

// maybeWatch starts the watch of c's request if it has run long enough,
// and reports whether c has a request armed.
func (c *conn) maybeWatch(now time.Time) bool {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if c.armedAt.IsZero() {
		return false
	}
	if !c.watching && now.Sub(c.armedAt) >= DisconnectCheckDelay {
		c.watching = true
		go c.watchDisconnect()
	}
	return true
}

var aLongTimeAgo = time.Unix(1, 0)

// watchDisconnect runs in its own goroutine while a slow request is in
// flight. It waits until the connection is readable and looks without
// consuming: end of stream or an error means the client went away, and the
// request's context is cancelled; data is a pipelined request, left for
// the serve loop.
func (c *conn) watchDisconnect() {
	defer func() { c.watchDone <- struct{}{} }()
	// A read deadline that passes while the handler runs (-read-timeout)
	// is not a disconnect: wait without one, unless stopWatch already set
	// its own to end the wait.
	c.watchMu.Lock()
	if c.stopping {
		c.watchMu.Unlock()
		return
	}
	c.nc.SetReadDeadline(time.Time{})
	c.watchMu.Unlock()
	var one [1]byte
	gone := false
	err := c.raw.Read(func(fd uintptr) bool {
		wait, closed := peekClosed(fd, one[:])
		gone = closed
		return !wait
	})
	if gone || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded)) { // closed under us: Close
		c.cancel()
	}
}

// requestError is a request refused before the handler: status and a short
// message for the client.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

var _ io.ReadCloser = (*bodyReader)(nil)
