// Package h1 is a lean HTTP/1.1 server and client, held to net/http's
// behaviour by differential tests and fuzz targets: Server serves an
// http.Handler at a fraction of net/http's server cost per request, and
// Client POSTs to one URL over kept-alive connections without net/http's
// per-request goroutine hand-offs. Like net/http it holds both sides; it
// knows net/http's types and nothing of the service it carries.
//
// It exists for one measured reason: in front of three
// backends on one CPU, a proxy built on net/http's server cannot reach 0.8 of
// nginx's throughput even with nothing but a lean client behind it (0.76),
// while the same client behind a plain read-parse-write loop passes nginx.
// net/http spends the difference on a goroutine per request that reads in
// the background to notice a client going away, on the deadline changes
// around it, and on allocations.
//
// What it keeps from net/http's server: any http.Handler (go-kit's
// transport, promhttp, ServeMux) runs unchanged; requests with
// Content-Length or chunked bodies, Expect: 100-continue, HTTP/1.0 and
// keep-alive, pipelining; read-header, read, write and idle timeouts; a
// header size limit; 400, 413, 417, 431, 501 and 505 for requests it
// cannot take; a request's context cancelled when its client disconnects;
// graceful Shutdown. What it leaves out: TLS, HTTP/2, Hijack, trailers in
// responses, and the ServerContextKey and LocalAddrContextKey values. What
// it does differently: a request's context is its connection's, so it is
// not cancelled when the handler returns, only when the client goes away or
// the connection ends.
//
// How it saves: one goroutine per connection that reads, calls the handler
// and writes the whole response with one write; no background read while
// a request is short (a client's disconnect is watched for only once a
// request has run for DisconnectCheckDelay); the request's header text is
// one allocation.
//
// On Linux it reads and writes through internal/rawio and watches
// connections with raw system calls; elsewhere it takes the plain path.
package h1

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DisconnectCheckDelay is how long a request runs before its connection is
// watched for the client going away: the watch starts between this delay
// and half as much again after the request began. Shorter requests never
// pay for the watch.
const DisconnectCheckDelay = 10 * time.Millisecond

// Server serves HTTP/1.1. Its fields mean what http.Server's do; set them
// before Serve. ReadHeaderTimeout and ReadTimeout count, as net/http's do,
// from the accept for a connection's first request, and from its first
// byte for a later one, which IdleTimeout waits for.
type Server struct {
	Handler           http.Handler
	ReadHeaderTimeout time.Duration // to the end of a request's headers
	ReadTimeout       time.Duration // to the end of a request's body
	WriteTimeout      time.Duration // from the end of the headers to the end of the response
	IdleTimeout       time.Duration // a kept-alive connection waiting for the next request
	MaxHeaderBytes    int           // request line and headers; 0 means 1 MiB
	ErrorLog          *log.Logger   // nil: the log package's standard logger

	mu        sync.Mutex
	baseCtx   context.Context // every request's context derives from it; Close cancels it
	cancelAll context.CancelFunc
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	sweeping  atomic.Bool // the sweep goroutine runs
}

// Serve accepts connections on l and serves each in its own goroutine. It
// returns http.ErrServerClosed after Shutdown or Close, and any other error
// of l.Accept that is not temporary.
func (s *Server) Serve(l net.Listener) error {
	if !s.track(l) {
		return http.ErrServerClosed
	}
	defer s.untrack(l)
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() { // e.g. EMFILE: wait and go on, as net/http does
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("h1: accept: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		if !s.trackConn(c) {
			nc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, and waits for the
// active ones to finish their request (answered with Connection: close) or
// for ctx to end, whose error it then returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.closeListeners()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.closeListeners()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
	// Only now: a handler that returns when its context ends must not get
	// its answer out, as if the server had not closed.
	if s.cancelAll != nil {
		s.cancelAll()
	}
	return nil
}

// readHeaderTimeout and idleTimeout fall back to ReadTimeout, as net/http's do.
func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return s.ReadTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return s.ReadTimeout
}

func (s *Server) track(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
		s.baseCtx, s.cancelAll = context.WithCancel(context.Background())
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) untrack(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
}

func (s *Server) trackConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeIdle closes the connections waiting for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle {
			c.nc.Close()
			c.idle = false // closed once is enough; serve will untrack it
		}
	}
	return len(s.conns) == 0
}

// setIdle marks c as waiting for a request (closable by Shutdown) or not,
// and reports false when the server is shutting down: an idle connection
// then ends instead of waiting.
func (s *Server) setIdle(c *conn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.idle = idle
	return !s.closing.Load()
}

// startSweep starts the sweep unless it runs.
func (s *Server) startSweep() {
	if !s.sweeping.Load() && s.sweeping.CompareAndSwap(false, true) {
		go s.sweep()
	}
}

// sweep looks at the connections every half DisconnectCheckDelay and starts
// the disconnect watch of each request that has run that long. It ends once
// no request is armed, and armWatch starts it again.
func (s *Server) sweep() {
	t := time.NewTicker(DisconnectCheckDelay / 2)
	defer t.Stop()
	for now := range t.C {
		if s.sweepOnce(now) {
			continue
		}
		s.sweeping.Store(false)
		// A request armed since the look above saw the flag still set and
		// started nothing: look again, and go on unless another sweep did.
		if !s.sweepOnce(now) || !s.sweeping.CompareAndSwap(false, true) {
			return
		}
	}
}

// sweepOnce starts the watches due at now and reports whether any request
// is armed.
func (s *Server) sweepOnce(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	armed := false
	for c := range s.conns {
		if c.maybeWatch(now) {
			armed = true
		}
	}
	return armed
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}
