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
	br         *bufio.Reader
	out        []byte // the response being built, written with one Write
	bodyBuf    []byte // the body held back until the handler returns
	idle       bool   // guarded by s.mu

	// The disconnect watch of the request in flight.
	watchMu    sync.Mutex
	stopping   bool // guarded by watchMu: stopWatch has taken the deadline back
	watch      *time.Timer
	watchDone  chan struct{}
	watchArmed bool

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

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, remoteAddr: nc.RemoteAddr().String()}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	c.rw = rawio.New(nc)
	c.br = bufio.NewReaderSize(c.rw, 4096)
	c.ctx, c.cancel = context.WithCancel(s.baseCtx)
	c.watchDone = make(chan struct{}, 1)
	c.watch = time.AfterFunc(time.Hour, c.watchDisconnect)
	c.watch.Stop()
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
		c.nc.Close()
		c.s.untrackConn(c)
	}()
	first := true
	for {
		if !c.waitForRequest(first) {
			return
		}
		first = false
		if !c.serveOne() {
			return
		}
	}
}

// waitForRequest waits, as an idle connection, until the next request's
// first byte is there. It reports false when the connection should end.
func (c *conn) waitForRequest(first bool) bool {
	if c.br.Buffered() > 0 { // pipelined: the next request is already here
		return !c.s.closing.Load()
	}
	d := c.s.idleTimeout()
	if first { // a new connection gets the header timeout, as with net/http
		d = c.s.readHeaderTimeout()
	}
	if d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
	if !c.s.setIdle(c, true) {
		return false
	}
	if !first {
		// Let the other connections' goroutines run first. Under load the
		// client's next request has then arrived, and the read below
		// succeeds instead of failing with EAGAIN and parking on the
		// poller (BENCHMARKS.md: 0.3 → 0.04 failed reads per request); an
		// idle process gets its turn back at once.
		runtime.Gosched()
	}
	_, err := c.br.Peek(1)
	return c.s.setIdle(c, false) && err == nil
}

// serveOne reads one request, runs the handler and writes the response. It
// reports whether the connection can carry another request.
func (c *conn) serveOne() (keep bool) {
	start := time.Now()
	if d := c.s.readHeaderTimeout(); d > 0 {
		c.nc.SetReadDeadline(start.Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
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
	if d := c.s.ReadTimeout; d > 0 && d != c.s.readHeaderTimeout() {
		c.nc.SetReadDeadline(start.Add(d))
	} else if d <= 0 && c.s.readHeaderTimeout() > 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
	if d := c.s.WriteTimeout; d > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(d))
	}

	req.RemoteAddr = c.remoteAddr
	w := &req.resp
	*w = response{c: c, req: req, header: make(http.Header, 4), start: start}
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
	return keep && !w.closeAfter && w.keepAlive()
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
	c.rw.Write(c.out)
	if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite() // let the client read the answer before the close
	}
}

// armWatch starts the countdown to watching for the client's disconnect,
// once the request's body has been read.
func (c *conn) armWatch() {
	if c.raw == nil || c.watchArmed {
		return
	}
	c.watchArmed = true
	c.watch.Reset(DisconnectCheckDelay)
}

// stopWatch ends the watch of the request that just finished, waiting for
// it to let go of the connection if it had started.
func (c *conn) stopWatch() {
	if !c.watchArmed {
		return
	}
	c.watchArmed = false
	if c.watch.Stop() {
		return // it never ran
	}
	// It is running or ran: make its wait fail, then wait for it.
	c.watchMu.Lock()
	c.stopping = true
	c.nc.SetReadDeadline(aLongTimeAgo)
	c.watchMu.Unlock()
	<-c.watchDone
	c.stopping = false
}

var aLongTimeAgo = time.Unix(1, 0)

// watchDisconnect runs in the timer's goroutine while a slow request is in
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
		n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
			return false // wait for the poller
		case err != nil || n == 0:
			gone = true
		}
		return true
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
